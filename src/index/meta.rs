//! Typed values kept in the `meta` table: the limits stored with
//! `gocache limits`, a summary of the last trim, the `gdsf` policy's
//! clock history, and per remote store the actions it did not have that go
//! never stores and the sets of uses this machine reported to it lately.

use rusqlite::OptionalExtension;

use super::statements::SQL_META;
use super::{Index, SqlResult};
use crate::error::{Error, Result};
use crate::layout::Id;
use crate::limits::LimitSpecs;
use crate::model::UnixTime;
use crate::policy::Clock;

/// The key the stored limits live under (as JSON).
const LIMITS_KEY: &str = "limits";
/// The key the last trim's summary lives under (as JSON).
const LAST_TRIM_KEY: &str = "last_trim";
/// The key the `gdsf` policy's clock history lives under (as JSON).
const GDSF_CLOCK_KEY: &str = "gdsf_clock";
/// The key (then a space and the store) of [`Index::remote_absent`]'s set
/// (as JSON: action hex to Unix seconds).
const REMOTE_ABSENT_KEY: &str = "remote_absent";
/// The key (then a space and the store) of [`Index::remote_reported`]'s
/// sets (as JSON: fingerprint hex to Unix seconds).
const REMOTE_REPORTED_KEY: &str = "remote_reported";

/// What a trim did, recorded for people looking at the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LastTrim {
    /// When it ran.
    pub at: UnixTime,
    /// Whether every limit was met after it.
    pub limits_met: bool,
    /// Entries it removed.
    pub removed: u64,
    /// Allocated bytes they held.
    pub removed_allocated: u64,
}

impl Index {
    /// The limits stored with `gocache limits` (empty when none are);
    /// an error when what is stored cannot be read back.
    pub fn stored_limits(&self) -> Result<LimitSpecs> {
        match self.meta(LIMITS_KEY)? {
            Some(json) => serde_json::from_str(&json).map_err(|error| Error::StoredLimits {
                path: self.path.clone(),
                error,
            }),
            None => Ok(LimitSpecs::default()),
        }
    }

    /// Stores `limits` in place of what was stored (empty ones: none).
    pub fn store_limits(&mut self, limits: &LimitSpecs) -> Result<()> {
        let json = serde_json::to_string(limits).expect("limits serialise to JSON");
        self.set_meta(LIMITS_KEY, &json)
    }

    /// Records what the last trim did.
    pub fn record_last_trim(&mut self, trim: &LastTrim) -> Result<()> {
        let json = serde_json::to_string(trim).expect("a trim summary serialises to JSON");
        self.set_meta(LAST_TRIM_KEY, &json)
    }

    /// The GreedyDual policies' clock history (empty when none is stored, or
    /// what is stored does not parse: the clock starts again from 0,
    /// which only makes older entries look newer for a while).
    pub fn gdsf_clock(&self) -> Result<Clock> {
        Ok(self
            .meta(GDSF_CLOCK_KEY)?
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default())
    }

    /// Stores the GreedyDual policies' clock history.
    pub fn store_gdsf_clock(&mut self, clock: &Clock) -> Result<()> {
        let json = serde_json::to_string(clock).expect("a clock serializes");
        self.set_meta(GDSF_CLOCK_KEY, &json)
    }

    /// Puts back a value salvaged from a damaged index (see `recover`):
    /// only keys this binary knows, with values that parse.
    pub(super) fn restore_meta(&mut self, key: &str, value: &str) -> Result<()> {
        let parses = match key {
            LIMITS_KEY => serde_json::from_str::<LimitSpecs>(value).is_ok(),
            LAST_TRIM_KEY => serde_json::from_str::<LastTrim>(value).is_ok(),
            GDSF_CLOCK_KEY => serde_json::from_str::<Clock>(value).is_ok(),
            _ => false,
        };
        if parses {
            self.set_meta(key, value)?;
        }
        Ok(())
    }

    /// What the last trim recorded, if one did (and it can be read back).
    pub fn last_trim(&self) -> Result<Option<LastTrim>> {
        Ok(self
            .meta(LAST_TRIM_KEY)?
            .and_then(|json| serde_json::from_str(&json).ok()))
    }

    /// The actions the remote store `place` did not have and go never
    /// stored, each with the time until which prog need not ask for it
    /// again (see `prog::books::Absent`). Empty when none are stored or
    /// what is stored cannot be read (it is only a hint).
    pub fn remote_absent(&self, place: &str) -> Result<std::collections::HashMap<Id, UnixTime>> {
        self.id_times(&format!("{REMOTE_ABSENT_KEY} {place}"))
    }

    /// Stores [`Index::remote_absent`]'s set for `place` in place of what
    /// was stored (none when `absent` is empty).
    pub fn store_remote_absent(
        &mut self,
        place: &str,
        absent: &std::collections::HashMap<Id, UnixTime>,
    ) -> Result<()> {
        self.set_id_times(&format!("{REMOTE_ABSENT_KEY} {place}"), absent)
    }

    /// The sets of uses this machine reported to the remote store `place`
    /// lately, by fingerprint, with when (see
    /// `remote::tier::REPORT_AGAIN_AFTER`). Empty when none are stored or
    /// what is stored cannot be read (it is only a hint).
    pub fn remote_reported(&self, place: &str) -> Result<std::collections::HashMap<Id, UnixTime>> {
        self.id_times(&format!("{REMOTE_REPORTED_KEY} {place}"))
    }

    /// Adds a set of uses reported to `place` at `at` to
    /// [`Index::remote_reported`]'s, dropping those reported before
    /// `forget_before`.
    pub fn add_remote_reported(
        &mut self,
        place: &str,
        fingerprint: Id,
        at: UnixTime,
        forget_before: UnixTime,
    ) -> Result<()> {
        let mut sets = self.remote_reported(place)?;
        sets.retain(|_, t| *t >= forget_before);
        let t = sets.entry(fingerprint).or_insert(at);
        *t = (*t).max(at);
        self.set_id_times(&format!("{REMOTE_REPORTED_KEY} {place}"), &sets)
    }

    fn id_times(&self, key: &str) -> Result<std::collections::HashMap<Id, UnixTime>> {
        let Some(json) = self.meta(key)? else {
            return Ok(Default::default());
        };
        let map: std::collections::HashMap<String, UnixTime> =
            serde_json::from_str(&json).unwrap_or_default();
        Ok(map
            .into_iter()
            .filter_map(|(hex, t)| Some((Id::from_hex(hex.as_bytes())?, t)))
            .collect())
    }

    fn set_id_times(
        &mut self,
        key: &str,
        map: &std::collections::HashMap<Id, UnixTime>,
    ) -> Result<()> {
        if map.is_empty() {
            return self
                .conn
                .execute("DELETE FROM meta WHERE key = ?1", [key])
                .map(drop)
                .at(&self.path);
        }
        let map: std::collections::BTreeMap<String, UnixTime> =
            map.iter().map(|(id, t)| (id.to_string(), *t)).collect();
        let json = serde_json::to_string(&map).unwrap_or_default();
        self.set_meta(key, &json)
    }

    pub(super) fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .prepare_cached(SQL_META)
            .and_then(|mut q| q.query_row([key], |r| r.get(0)).optional())
            .at(&self.path)
    }

    pub(super) fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                [key, value],
            )
            .map(drop)
            .at(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::SizeLimit;

    #[test]
    fn stored_limits_round_trip_and_bad_ones_say_how_to_reset() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::open(&dir.path().join("i.sqlite")).unwrap();
        assert!(ix.stored_limits().unwrap().is_empty());
        let limits = LimitSpecs {
            budget: Some(SizeLimit::Bytes(10 << 30)),
            ..Default::default()
        };
        ix.store_limits(&limits).unwrap();
        assert_eq!(ix.stored_limits().unwrap(), limits);
        assert_eq!(
            ix.meta(LIMITS_KEY).unwrap().unwrap(),
            r#"{"budget":{"bytes":10737418240}}"#
        );
        ix.store_limits(&LimitSpecs::default()).unwrap();
        assert_eq!(ix.meta(LIMITS_KEY).unwrap().unwrap(), "{}");
        assert_eq!(ix.last_trim().unwrap(), None);
        let t = LastTrim {
            at: 5,
            limits_met: true,
            removed: 3,
            removed_allocated: 12288,
        };
        ix.record_last_trim(&t).unwrap();
        assert_eq!(ix.last_trim().unwrap(), Some(t));
        ix.set_meta(LIMITS_KEY, "not json").unwrap();
        let err = ix.stored_limits().unwrap_err().to_string();
        assert!(err.contains("gocache limits --reset"), "{err}");
    }
}
