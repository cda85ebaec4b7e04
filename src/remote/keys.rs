//! The tier's object names, relative to the store's root
//! (`s3://BUCKET/PREFIX`):
//!
//! | key | holds |
//! | --- | --- |
//! | `o/<output ID hex>` | an output's bytes; its SHA-256 is its name |
//! | `z/<output ID hex>.<length>` | an output, zstd-compressed; the name carries its length |
//! | `a/<action ID hex>` | Go's 175-byte action entry, verbatim |
//! | `uses/log-<unix time>-<16 hex>` | one batch of a session's uses |
//! | `uses/snap-<unix time>-<16 hex>` | a trim's merge of logs and older snapshots |
//! | `m/<SHA-256 hex of a build's key>` | a session manifest: what the last session with that key used ([`super::manifest`]) |
//!
//! Anything else under the prefix is someone else's: counted, never
//! deleted.
//!
//! An action entry whose output is stored compressed carries the metadata
//! [`OUTPUT_FORM`]` = `[`ZSTD`], so a reader asks for the right key first.
//! A compressed output's key carries its (decompressed) length so that a
//! listing alone tells what the bucket holds before compression, and
//! older versions of gocache, which know only `o/`, see a miss, never
//! bytes they cannot read.

use std::fmt;

use crate::layout::{HEX_LEN, Id};
use crate::model::UnixTime;

/// Where outputs live.
pub const OUTPUTS: &str = "o/";
/// Where compressed outputs live.
pub const COMPRESSED: &str = "z/";
/// Where action entries live.
pub const ACTIONS: &str = "a/";
/// The action entry's metadata that says how its output is stored.
pub const OUTPUT_FORM: &str = "gocache-output";
/// [`OUTPUT_FORM`]'s value for an output stored at [`compressed_key`].
pub const ZSTD: &str = "zstd";
/// Where use logs and snapshots live.
pub const USES: &str = "uses/";
/// Where session manifests live.
pub const MANIFESTS: &str = "m/";

/// The key of output `id`.
pub fn output_key(id: Id) -> String {
    format!("{OUTPUTS}{id}")
}

/// The key of output `id`, `size` bytes long, stored compressed.
pub fn compressed_key(id: Id, size: u64) -> String {
    format!("{COMPRESSED}{id}.{size}")
}

/// The key of action entry `id`.
pub fn action_key(id: Id) -> String {
    format!("{ACTIONS}{id}")
}

/// The key of the session manifest whose key hashes to `id`.
pub fn manifest_key(id: Id) -> String {
    format!("{MANIFESTS}{id}")
}

/// What a key under the prefix is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RemoteKey {
    /// `a/<hex>`.
    Action(Id),
    /// `o/<hex>`.
    Output(Id),
    /// `z/<hex>.<length>`: the output and its decompressed length.
    Compressed(Id, u64),
    /// `uses/log-…` or `uses/snap-…`.
    Uses(UsesName),
    /// `m/<hex>`: a session manifest.
    Manifest(Id),
    /// Anything else.
    Other,
}

impl RemoteKey {
    /// Classifies a key (relative to the prefix). Only exact names count:
    /// lowercase hex of the right length, nothing after it.
    pub fn parse(key: &str) -> RemoteKey {
        let id = |hex: &str| (hex.len() == HEX_LEN).then(|| Id::from_hex(hex.as_bytes()))?;
        if let Some(id) = key.strip_prefix(ACTIONS).and_then(id) {
            return RemoteKey::Action(id);
        }
        if let Some(id) = key.strip_prefix(OUTPUTS).and_then(id) {
            return RemoteKey::Output(id);
        }
        if let Some((hex, len)) = key
            .strip_prefix(COMPRESSED)
            .and_then(|rest| rest.split_once('.'))
            && let Some(id) = id(hex)
            && let Some(len) = parse_len(len)
        {
            return RemoteKey::Compressed(id, len);
        }
        if let Some(id) = key.strip_prefix(MANIFESTS).and_then(id) {
            return RemoteKey::Manifest(id);
        }
        if let Some(name) = key.strip_prefix(USES).and_then(UsesName::parse) {
            return RemoteKey::Uses(name);
        }
        RemoteKey::Other
    }
}

/// A length as a key writes it: decimal digits, no sign, no leading zero.
fn parse_len(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok())?
}

/// A use log (written by sessions) or a snapshot (written by trims).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UsesKind {
    /// `uses/log-…`: one batch of one session.
    Log,
    /// `uses/snap-…`: a trim's merge.
    Snapshot,
}

/// The name of a use log or snapshot: its kind, when it was written, and a
/// random part so that writers never collide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UsesName {
    /// Log or snapshot.
    pub kind: UsesKind,
    /// When it was written (the writer's clock), Unix seconds.
    pub time: UnixTime,
    /// Random, to keep names unique.
    pub nonce: u64,
}

impl UsesName {
    /// A fresh name of `kind` written at `time`.
    pub fn new(kind: UsesKind, time: UnixTime) -> UsesName {
        UsesName {
            kind,
            time,
            nonce: fastrand::u64(..),
        }
    }

    /// Parses the part after `uses/`.
    pub fn parse(s: &str) -> Option<UsesName> {
        let (kind, rest) = if let Some(r) = s.strip_prefix("log-") {
            (UsesKind::Log, r)
        } else if let Some(r) = s.strip_prefix("snap-") {
            (UsesKind::Snapshot, r)
        } else {
            return None;
        };
        let (time, nonce) = rest.split_once('-')?;
        if time.len() != 12 || nonce.len() != 16 {
            return None;
        }
        let all = |s: &str, f: fn(&u8) -> bool| s.as_bytes().iter().all(f);
        if !all(time, u8::is_ascii_digit)
            || !all(nonce, |c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
        {
            return None;
        }
        Some(UsesName {
            kind,
            time: time.parse().ok()?,
            nonce: u64::from_str_radix(nonce, 16).ok()?,
        })
    }

    /// The full key (`uses/log-000001767323045-0123456789abcdef`).
    pub fn key(&self) -> String {
        format!("{USES}{self}")
    }
}

impl fmt::Display for UsesName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            UsesKind::Log => "log",
            UsesKind::Snapshot => "snap",
        };
        // Zero-padded, so that names sort by time.
        write!(f, "{kind}-{:012}-{:016x}", self.time.max(0), self.nonce)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_nothing_else_parses() {
        let id = Id([0xab; 32]);
        assert_eq!(RemoteKey::parse(&output_key(id)), RemoteKey::Output(id));
        assert_eq!(RemoteKey::parse(&action_key(id)), RemoteKey::Action(id));
        assert_eq!(RemoteKey::parse(&manifest_key(id)), RemoteKey::Manifest(id));
        assert_eq!(compressed_key(id, 4096), format!("z/{id}.4096"));
        assert_eq!(
            RemoteKey::parse(&compressed_key(id, u64::MAX)),
            RemoteKey::Compressed(id, u64::MAX)
        );
        let n = UsesName {
            kind: UsesKind::Log,
            time: 1_767_323_045,
            nonce: 0x0123_4567_89ab_cdef,
        };
        assert_eq!(n.key(), "uses/log-001767323045-0123456789abcdef");
        assert_eq!(RemoteKey::parse(&n.key()), RemoteKey::Uses(n));
        let s = UsesName::new(UsesKind::Snapshot, 5);
        assert_eq!(RemoteKey::parse(&s.key()), RemoteKey::Uses(s));

        let hex = id.to_hex();
        for other in [
            format!("o/{}", hex.to_uppercase()),
            format!("o/{hex}x"),
            format!("o/{}", &hex[1..]),
            format!("a/{hex}/x"),
            format!("z/{hex}"),
            format!("z/{hex}."),
            format!("z/{hex}.012"),
            format!("z/{hex}.-1"),
            format!("z/{hex}.1x"),
            format!("z/{hex}.18446744073709551616"),
            format!("z/{}.5", &hex[1..]),
            format!("x/{hex}"),
            format!("m/{hex}.1"),
            format!("m/{}", &hex[1..]),
            "uses/log-1-2".to_owned(),
            "uses/log-001767323045-0123456789ABCDEF".to_owned(),
            "uses/other-001767323045-0123456789abcdef".to_owned(),
            "README".to_owned(),
        ] {
            assert_eq!(RemoteKey::parse(&other), RemoteKey::Other, "{other}");
        }
    }

    #[test]
    fn names_sort_by_time() {
        let a = UsesName::new(UsesKind::Log, 99).key();
        let b = UsesName::new(UsesKind::Log, 100).key();
        assert!(a < b, "{a} {b}");
    }
}
