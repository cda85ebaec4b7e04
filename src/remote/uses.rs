//! Fleet-wide last use, recorded without rewriting any object.
//!
//! Objects in a store cannot be touched the way Go touches a file's mtime
//! (S3 has no cheap "mark used"; a copy onto itself rewrites the object).
//! Instead every session appends what it used, in batches, as small use
//! logs, and each trim merges the logs into a snapshot. [`Uses`] is both: a
//! log is the snapshot of one batch.
//!
//! # A merge that cannot lose anything
//!
//! Every field of [`Uses`] only grows: an entry's last use is a maximum, a
//! session's counters are cumulative (each log carries the session's totals
//! so far), so merging is a maximum field by field. That merge is
//! commutative, associative and idempotent: merging a log twice, or two
//! snapshots that both hold it, counts it once. So any number of trims may
//! merge overlapping sets of logs at the same time, and readers may merge
//! every log and snapshot they find, in any order.
//!
//! # Format
//!
//! Text, one record a line, sorted so that equal contents give equal bytes:
//!
//! ```text
//! gocache-remote-uses 1
//! s <session> <last> <lookups> <hits> <uploads> <upload bytes> <download bytes> <refused> <errors>
//! a <action hex> <output hex> <unix time>
//! o <output hex> <unix time>
//! ```
//!
//! An `a` line is a use of the action entry and of the output it names (Go
//! reads both, and puts both), and tells a trim which output an action
//! names without reading the action object. An `o` line appears only when
//! an output was used later than every `a` line naming it says. A reader
//! refuses a file whose first line is not this header (a newer version says
//! so, and a trim leaves it alone).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use crate::layout::{Id, IdHash};
use crate::model::UnixTime;

/// The first line of the current format.
pub const HEADER: &str = "gocache-remote-uses 1";

/// A session: one `gocache prog` process (one go command), named by when it
/// started and a random part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId {
    /// When it started, Unix seconds.
    pub started: UnixTime,
    /// Random, to tell apart sessions that start in the same second.
    pub nonce: u64,
}

impl SessionId {
    /// A fresh session starting at `now`.
    pub fn new(now: UnixTime) -> SessionId {
        SessionId {
            started: now,
            nonce: fastrand::u64(..),
        }
    }

    fn parse(s: &str) -> Option<SessionId> {
        let (t, n) = s.split_once('-')?;
        Some(SessionId {
            started: t.parse().ok()?,
            nonce: u64::from_str_radix(n, 16).ok()?,
        })
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{:016x}", self.started, self.nonce)
    }
}

/// A session's counters: totals since it started, so each only grows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SessionCounts {
    /// When the session last reported, Unix seconds.
    pub last: UnixTime,
    /// Entries asked of the store (local misses).
    pub lookups: u64,
    /// Of those, entries the store had, verified and served.
    pub hits: u64,
    /// Entries uploaded.
    pub uploads: u64,
    /// Bytes uploaded (outputs and action entries).
    pub upload_bytes: u64,
    /// Bytes downloaded and served.
    pub download_bytes: u64,
    /// Objects refused because they failed verification.
    pub refused: u64,
    /// Store errors (unreachable, refused, timed out).
    pub errors: u64,
}

impl SessionCounts {
    const FIELDS: usize = 8;

    fn to_array(self) -> [u64; Self::FIELDS] {
        [
            self.last.max(0) as u64,
            self.lookups,
            self.hits,
            self.uploads,
            self.upload_bytes,
            self.download_bytes,
            self.refused,
            self.errors,
        ]
    }

    fn from_array(a: [u64; Self::FIELDS]) -> Option<SessionCounts> {
        Some(SessionCounts {
            last: i64::try_from(a[0]).ok()?,
            lookups: a[1],
            hits: a[2],
            uploads: a[3],
            upload_bytes: a[4],
            download_bytes: a[5],
            refused: a[6],
            errors: a[7],
        })
    }

    /// Field-wise maximum: the later of two reports of one session.
    pub fn merge(&mut self, other: &SessionCounts) {
        let (mut a, b) = (self.to_array(), other.to_array());
        for (x, y) in a.iter_mut().zip(b) {
            *x = (*x).max(y);
        }
        *self = SessionCounts::from_array(a).expect("both inputs were valid");
    }

    /// Adds another session's counters (for totals over sessions).
    pub fn add(&mut self, other: &SessionCounts) {
        self.last = self.last.max(other.last);
        self.lookups = self.lookups.saturating_add(other.lookups);
        self.hits = self.hits.saturating_add(other.hits);
        self.uploads = self.uploads.saturating_add(other.uploads);
        self.upload_bytes = self.upload_bytes.saturating_add(other.upload_bytes);
        self.download_bytes = self.download_bytes.saturating_add(other.download_bytes);
        self.refused = self.refused.saturating_add(other.refused);
        self.errors = self.errors.saturating_add(other.errors);
    }
}

/// The last use of an action entry, and the output it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ActionUse {
    /// Unix seconds.
    pub last_use: UnixTime,
    /// The output the action named at that use.
    pub output: Id,
}

/// Uses and session counters: a log, a snapshot, or the merge of many.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Uses {
    /// Action entries: last use and the output named.
    pub actions: HashMap<Id, ActionUse, IdHash>,
    /// Outputs: last use.
    pub outputs: HashMap<Id, UnixTime, IdHash>,
    /// Sessions' counters.
    pub sessions: BTreeMap<SessionId, SessionCounts>,
}

/// Why a use log or snapshot was not read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UsesError {
    /// Written by a newer gocache, in a format this one does not know.
    #[error("written in format {0}, newer than this gocache reads (1): upgrade gocache")]
    Newer(String),
    /// Not a use log at all, or damaged.
    #[error("line {line}: {what}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: &'static str,
    },
}

impl Uses {
    /// True when it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.outputs.is_empty() && self.sessions.is_empty()
    }

    /// Records a use of action entry `action`, naming `output`, at `at`.
    pub fn record(&mut self, action: Id, output: Id, at: UnixTime) {
        self.merge_action(
            action,
            ActionUse {
                last_use: at,
                output,
            },
        );
    }

    /// Records a use of `output` alone.
    pub fn record_output(&mut self, output: Id, at: UnixTime) {
        let t = self.outputs.entry(output).or_insert(at);
        *t = (*t).max(at);
    }

    fn merge_action(&mut self, action: Id, u: ActionUse) {
        // The later use wins; on a tie, the larger output ID, so that the
        // merge does not depend on order.
        let e = self.actions.entry(action).or_insert(u);
        *e = (*e).max(u);
        self.record_output(u.output, u.last_use);
    }

    /// What was used, without when: the same for two sessions that used
    /// the same action entries (naming the same outputs) and outputs,
    /// whatever their order or times.
    pub fn fingerprint(&self) -> Id {
        let mut actions: Vec<_> = self
            .actions
            .iter()
            .map(|(a, u)| (a.0, u.output.0))
            .collect();
        actions.sort_unstable();
        let mut outputs: Vec<_> = self.outputs.keys().map(|o| o.0).collect();
        outputs.sort_unstable();
        let mut h = blake3::Hasher::new();
        h.update(b"gocache uses\0");
        h.update(&(actions.len() as u64).to_le_bytes());
        for (a, o) in &actions {
            h.update(a);
            h.update(o);
        }
        h.update(&(outputs.len() as u64).to_le_bytes());
        for o in &outputs {
            h.update(o);
        }
        Id(*h.finalize().as_bytes())
    }

    /// Merges `other` into `self` (field-wise maximum; see the module doc).
    pub fn merge(&mut self, other: &Uses) {
        for (&a, &u) in &other.actions {
            self.merge_action(a, u);
        }
        for (&o, &t) in &other.outputs {
            self.record_output(o, t);
        }
        for (s, c) in &other.sessions {
            self.sessions.entry(*s).or_default().merge(c);
        }
    }

    /// The counters of every session that reported at or after `since`,
    /// added up.
    pub fn totals_since(&self, since: UnixTime) -> (u64, SessionCounts) {
        let mut total = SessionCounts::default();
        let mut n = 0;
        for c in self.sessions.values().filter(|c| c.last >= since) {
            total.add(c);
            n += 1;
        }
        (n, total)
    }

    /// Encodes in the text format (see the module doc).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::with_capacity(64 + self.actions.len() * 142);
        out.push_str(HEADER);
        out.push('\n');
        for (s, c) in &self.sessions {
            let _ = write!(out, "s {s}");
            for v in c.to_array() {
                let _ = write!(out, " {v}");
            }
            out.push('\n');
        }
        let mut actions: Vec<_> = self.actions.iter().collect();
        actions.sort_unstable_by_key(|(a, _)| **a);
        // An output's use implied by the a lines naming it.
        let mut implied: HashMap<Id, UnixTime, IdHash> = HashMap::default();
        for (a, u) in &actions {
            let _ = writeln!(out, "a {a} {} {}", u.output, u.last_use);
            let t = implied.entry(u.output).or_insert(u.last_use);
            *t = (*t).max(u.last_use);
        }
        let mut outputs: Vec<_> = self
            .outputs
            .iter()
            .filter(|(o, t)| implied.get(o).is_none_or(|i| *i < **t))
            .collect();
        outputs.sort_unstable_by_key(|(o, _)| **o);
        for (o, t) in outputs {
            let _ = writeln!(out, "o {o} {t}");
        }
        out.into_bytes()
    }

    /// Decodes the text format, strictly: anything unexpected is an error,
    /// so a damaged file is never half-read.
    pub fn decode(data: &[u8]) -> Result<Uses, UsesError> {
        let bad = |line, what| UsesError::Malformed { line, what };
        let text = std::str::from_utf8(data).map_err(|_| bad(1, "not UTF-8 text"))?;
        let mut lines = text.split_inclusive('\n');
        let first = lines.next().ok_or(bad(1, "empty"))?;
        let first = first.strip_suffix('\n').ok_or(bad(1, "no end of line"))?;
        if first != HEADER {
            return match first.strip_prefix("gocache-remote-uses ") {
                Some(v) => Err(UsesError::Newer(v.to_owned())),
                None => Err(bad(1, "not a gocache use log (wrong first line)")),
            };
        }
        let mut uses = Uses::default();
        for (i, line) in lines.enumerate() {
            let n = i + 2;
            let line = line.strip_suffix('\n').ok_or(bad(n, "no end of line"))?;
            let mut f = line.split(' ');
            let tag = f.next().unwrap_or_default();
            let fields: Vec<&str> = f.collect();
            let id = |s: &str| Id::from_hex(s.as_bytes()).ok_or(bad(n, "malformed ID"));
            let time = |s: &str| {
                s.parse::<UnixTime>()
                    .ok()
                    .filter(|t| *t >= 0)
                    .ok_or(bad(n, "malformed time"))
            };
            match (tag, fields.as_slice()) {
                ("a", [a, o, t]) => uses.merge_action(
                    id(a)?,
                    ActionUse {
                        last_use: time(t)?,
                        output: id(o)?,
                    },
                ),
                ("o", [o, t]) => uses.record_output(id(o)?, time(t)?),
                ("s", [s, rest @ ..]) if rest.len() == SessionCounts::FIELDS => {
                    let s = SessionId::parse(s).ok_or(bad(n, "malformed session"))?;
                    let mut a = [0u64; SessionCounts::FIELDS];
                    for (x, v) in a.iter_mut().zip(rest) {
                        *x = v.parse().map_err(|_| bad(n, "malformed counter"))?;
                    }
                    let c = SessionCounts::from_array(a).ok_or(bad(n, "malformed counter"))?;
                    uses.sessions.entry(s).or_default().merge(&c);
                }
                _ => return Err(bad(n, "unknown or malformed record")),
            }
        }
        Ok(uses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Id {
        Id([n; 32])
    }

    #[test]
    fn the_fingerprint_is_what_was_used_not_when_nor_in_which_order() {
        let mut a = Uses::default();
        a.record(id(1), id(11), 100);
        a.record(id(2), id(12), 101);
        let mut b = Uses::default();
        b.record(id(2), id(12), 900);
        b.record(id(1), id(11), 950);
        assert_eq!(a.fingerprint(), b.fingerprint());
        let mut other_output = Uses::default();
        other_output.record(id(1), id(11), 100);
        other_output.record(id(2), id(13), 101);
        assert_ne!(a.fingerprint(), other_output.fingerprint());
        let mut more = a.clone();
        more.record_output(id(14), 102);
        assert_ne!(a.fingerprint(), more.fingerprint());
        assert_ne!(a.fingerprint(), Uses::default().fingerprint());
    }

    fn sample() -> Uses {
        let mut u = Uses::default();
        u.record(id(1), id(10), 100);
        u.record(id(2), id(10), 150);
        u.record(id(3), id(11), 90);
        u.record_output(id(11), 120);
        u.record_output(id(12), 80);
        u.sessions.insert(
            SessionId {
                started: 50,
                nonce: 7,
            },
            SessionCounts {
                last: 150,
                lookups: 9,
                hits: 4,
                uploads: 2,
                upload_bytes: 1000,
                download_bytes: 500,
                refused: 1,
                errors: 0,
            },
        );
        u
    }

    #[test]
    fn round_trips_and_writes_only_needed_output_lines() {
        let u = sample();
        let text = String::from_utf8(u.encode()).unwrap();
        assert!(
            text.starts_with(
                "gocache-remote-uses 1\ns 50-0000000000000007 150 9 4 2 1000 500 1 0\n"
            ),
            "{text}"
        );
        // id(10) is implied by the a lines; id(11) was used later than its
        // a line says; id(12) has no a line.
        assert!(!text.contains(&format!("o {} ", id(10))), "{text}");
        assert!(text.contains(&format!("o {} 120\n", id(11))), "{text}");
        assert!(text.contains(&format!("o {} 80\n", id(12))), "{text}");
        assert_eq!(Uses::decode(text.as_bytes()).unwrap(), u);
        assert_eq!(u.outputs[&id(10)], 150);
        assert_eq!(
            Uses::decode(Uses::default().encode().as_slice()).unwrap(),
            Uses::default()
        );
    }

    #[test]
    fn merge_is_a_maximum_in_any_order_and_idempotent() {
        let a = sample();
        let mut b = Uses::default();
        b.record(id(1), id(10), 300);
        b.record(id(4), id(13), 10);
        let s = SessionId {
            started: 50,
            nonce: 7,
        };
        b.sessions.insert(
            s,
            SessionCounts {
                last: 400,
                lookups: 20,
                hits: 3,
                ..SessionCounts::default()
            },
        );
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, ba);
        let mut twice = ab.clone();
        twice.merge(&a);
        twice.merge(&b);
        assert_eq!(twice, ab, "merging again changes nothing");
        assert_eq!(ab.actions[&id(1)].last_use, 300);
        assert_eq!(ab.outputs[&id(10)], 300);
        assert_eq!(ab.sessions[&s].lookups, 20);
        assert_eq!(ab.sessions[&s].hits, 4, "each counter is a maximum");
        let (n, total) = ab.totals_since(0);
        assert_eq!((n, total.lookups), (1, 20));
        assert_eq!(ab.totals_since(401).0, 0);
    }

    #[test]
    fn a_tie_is_broken_by_output_id() {
        let mut x = Uses::default();
        x.record(id(1), id(5), 100);
        let mut y = Uses::default();
        y.record(id(1), id(6), 100);
        let mut xy = x.clone();
        xy.merge(&y);
        let mut yx = y.clone();
        yx.merge(&x);
        assert_eq!(xy, yx);
        assert_eq!(xy.actions[&id(1)].output, id(6));
    }

    #[test]
    fn refuses_damaged_or_newer_files() {
        let good = String::from_utf8(sample().encode()).unwrap();
        let h = id(1).to_hex();
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "empty"),
            ("gocache-remote-uses 1".into(), "no end of line"),
            ("hello\n".into(), "wrong first line"),
            ("gocache-remote-uses 2\n".into(), "format 2, newer"),
            (
                format!("{HEADER}\na {h} {h}\n"),
                "line 2: unknown or malformed",
            ),
            (format!("{HEADER}\na {h} {h} -5\n"), "malformed time"),
            (format!("{HEADER}\na {} {h} 5\n", &h[1..]), "malformed ID"),
            (format!("{HEADER}\nx 1\n"), "unknown"),
            (
                format!("{HEADER}\ns 5-zz 1 2 3 4 5 6 7 8\n"),
                "malformed session",
            ),
            (
                format!("{HEADER}\ns 5-aa 1 2 3 4 5 6 7 x\n"),
                "malformed counter",
            ),
            (good[..good.len() - 1].to_owned(), "no end of line"),
        ];
        for (text, want) in cases {
            let err = Uses::decode(text.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        assert!(Uses::decode(&[0xff, b'\n']).is_err());
    }
}
