//! Limits: what people write (`10GiB`, `10%`, `36h`) turned into validated
//! values the policy takes.
//!
//! Units, a decision written down: `K`, `M`, `G`, `T` alone and `KiB`,
//! `MiB`, `GiB`, `TiB` are powers of 1024, as `du`, `df` and `sort -S` read
//! them; `KB`, `MB`, `GB`, `TB` are powers of 1000. Case does not matter. A
//! bare number is bytes. `10%` is a share of the filesystem holding the
//! cache, resolved when a command runs.
//!
//! Refused, each with its reason: negative sizes and durations, exponents
//! (`1e400`), a fraction of a byte (`1.5`; `1.5G` is whole bytes), months
//! and years (no fixed length), a grace period of `off`, and a budget or
//! exe quota of a bare `0`, which would empty the cache or its executables:
//! `0B` says that is meant ([`parse_cap`]).

use std::fmt;

use crate::error::{Error, Result};

/// Seconds in an hour.
pub const HOUR: i64 = 3600;
/// Seconds in a day.
pub const DAY: i64 = 86_400;
/// Go's own age limit for the cache (`trimLimit`), used for the build tier.
pub const DEFAULT_BUILD_MAX_AGE: i64 = 5 * DAY;
/// The exe tier's default age limit, as proposed in golang/go#69290.
pub const DEFAULT_EXE_MAX_AGE: i64 = 2 * DAY;
/// Default grace period: nothing used this recently is evicted.
pub const DEFAULT_GRACE: i64 = HOUR;
/// Go refreshes an entry's mtime only when it is over an hour old
/// (`mtimeInterval`), so an mtime may lag the real last use by this much.
/// The policy always adds it to the grace period.
pub const GO_MTIME_LAG: i64 = HOUR;

/// A size as given: bytes, or a share of the filesystem.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SizeSpec {
    /// A number of bytes.
    Bytes(u64),
    /// A percentage (0 to 100) of the filesystem's total size.
    Percent(f64),
}

impl SizeSpec {
    /// Parses `10GiB`, `10G`, `500MB`, `1.5GiB`, `1048576`, `10%`.
    pub fn parse(s: &str) -> Result<SizeSpec> {
        let t = s.trim();
        let bad = |why: &str| {
            Error::Invalid(format!(
                "invalid size {s:?}: {why} (examples: 10GiB, 500MB, 1.5G, 10%)"
            ))
        };
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 = p.trim().parse().map_err(|_| bad("not a number"))?;
            if !v.is_finite() || !(0.0..=100.0).contains(&v) {
                return Err(bad("a percentage must be between 0 and 100"));
            }
            return Ok(SizeSpec::Percent(v));
        }
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        if num.is_empty() {
            return Err(bad(if t.starts_with('-') {
                "sizes cannot be negative"
            } else {
                "no number"
            }));
        }
        let exponent = unit
            .strip_prefix(['e', 'E'])
            .map(|e| e.trim_start_matches(['+', '-']))
            .is_some_and(|e| !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit()));
        if exponent {
            return Err(bad(
                "exponents are not accepted; write the digits, or use a unit",
            ));
        }
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => 1 << 10,
            "m" | "mib" => 1 << 20,
            "g" | "gib" => 1 << 30,
            "t" | "tib" => 1 << 40,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            _ => return Err(bad("unknown unit")),
        };
        if let Ok(n) = num.parse::<u64>() {
            return n
                .checked_mul(mult)
                .map(SizeSpec::Bytes)
                .ok_or_else(|| bad("too large"));
        }
        let v: f64 = num.parse().map_err(|_| bad("not a number"))?;
        let bytes = v * mult as f64;
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(bad("too large"));
        }
        if mult == 1 && bytes.fract() != 0.0 {
            return Err(bad(
                "a fraction of a byte; give whole bytes, or a unit (1.5G is whole bytes)",
            ));
        }
        // A fraction of a larger unit is rounded to whole bytes.
        Ok(SizeSpec::Bytes(bytes.round() as u64))
    }

    /// True for a zero written without a unit (`0`, `00`, `0.0`).
    fn is_bare_zero(s: &str) -> bool {
        let t = s.trim();
        !t.is_empty()
            && t.bytes().all(|c| c.is_ascii_digit() || c == b'.')
            && matches!(SizeSpec::parse(t), Ok(SizeSpec::Bytes(0)))
    }

    /// Bytes, given the filesystem's total size for a percentage.
    pub fn resolve(self, fs_total: u64) -> u64 {
        match self {
            SizeSpec::Bytes(b) => b,
            SizeSpec::Percent(p) => ((fs_total as f64) * p / 100.0).round() as u64,
        }
    }
}

impl fmt::Display for SizeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeSpec::Bytes(b) => f.write_str(&humansize::format_size(*b, humansize::BINARY)),
            SizeSpec::Percent(p) => write!(f, "{p}% of the filesystem"),
        }
    }
}

/// Parses a cap on what the cache may hold (`--budget`, `--exe-quota`):
/// a size as [`SizeSpec::parse`] reads it, except a bare `0`, which would
/// remove `what` (everything outside the grace period): a typo as likely
/// as a wish. `0B` (or `0G`, `0%`) says it is meant.
pub fn parse_cap(s: &str, what: &str) -> Result<SizeSpec> {
    if SizeSpec::is_bare_zero(s) {
        return Err(Error::Invalid(format!(
            "a limit of {s:?} would remove {what} (all but what was used within the grace \
             period); write 0B if that is what you mean"
        )));
    }
    SizeSpec::parse(s)
}

/// Parses the grace period: a duration as [`parse_duration`] reads it;
/// `off` is refused with the reason.
pub fn parse_grace(s: &str) -> Result<i64> {
    if matches!(s.trim(), "off" | "none") {
        return Err(Error::Invalid(format!(
            "the grace period cannot be {:?}: it protects what running builds use; the shortest \
             is 0 (Go's 1h mtime lag is still added)",
            s.trim()
        )));
    }
    parse_duration(s)
}

/// Parses a duration: `90m`, `36h`, `2d`, `1w`, `1h30m`, `0`; whole seconds.
pub fn parse_duration(s: &str) -> Result<i64> {
    let t = s.trim();
    if t == "0" {
        return Ok(0);
    }
    let bad = |why: &dyn fmt::Display| {
        Error::Invalid(format!(
            "invalid duration {s:?}: {why} (examples: 90m, 36h, 2d, 1w, 1h30m)"
        ))
    };
    if t.starts_with('-') {
        return Err(bad(&"durations cannot be negative"));
    }
    // humantime reads `1M` as a month and `1y` as a year of its own
    // length, and rejects `1mo` naming "months" as supported: refuse them
    // all, for the same reason.
    let months_or_years = t
        .split(|c: char| !c.is_alphabetic())
        .filter(|u| !u.is_empty())
        .any(|u| {
            u == "M"
                || matches!(
                    u.to_lowercase().as_str(),
                    "mo" | "mos"
                        | "mon"
                        | "month"
                        | "months"
                        | "y"
                        | "yr"
                        | "yrs"
                        | "year"
                        | "years"
                )
        });
    if months_or_years {
        return Err(bad(
            &"months and years have no fixed length; write days or weeks (30d, 4w, 52w)",
        ));
    }
    let d = humantime::parse_duration(t).map_err(|e| bad(&e))?;
    i64::try_from(d.as_secs()).map_err(|_| Error::Invalid(format!("duration {s:?} is too long")))
}

/// A duration for people: `5d`, `2d 12h`, `1h`.
pub fn format_duration(secs: i64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    humantime::format_duration(std::time::Duration::from_secs(secs.unsigned_abs()))
        .to_string()
        .replace("days", "d")
        .replace("day", "d")
        .replace(' ', "")
}

/// An age limit as given: a duration, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgeSpec {
    /// No age limit.
    Off,
    /// Evict after this many seconds without use.
    Secs(i64),
}

impl AgeSpec {
    /// Parses a duration or `off`.
    pub fn parse(s: &str) -> Result<AgeSpec> {
        match s.trim() {
            "off" | "none" => Ok(AgeSpec::Off),
            other => parse_duration(other).map(AgeSpec::Secs),
        }
    }

    fn get(self) -> Option<i64> {
        match self {
            AgeSpec::Off => None,
            AgeSpec::Secs(s) => Some(s),
        }
    }
}

/// Limits as given and stored: any may be absent (the default applies), and
/// sizes may be shares of the filesystem. Stored as JSON in the index so
/// that cron, the hook and people share them.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LimitSpecs {
    /// Total budget for the cache, in allocated bytes. `None`: no budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<SizeSpec>,
    /// Quota for the exe tier. `None`: no quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe_quota: Option<SizeSpec>,
    /// Maximum age of build entries (default 5 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_max_age: Option<AgeSpec>,
    /// Maximum age of executables (default 2 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe_max_age: Option<AgeSpec>,
    /// Grace period in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace: Option<i64>,
    /// Free-space floor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_free: Option<SizeSpec>,
}

impl LimitSpecs {
    /// `over`'s values where it has them, ours elsewhere (a command's flags
    /// over the stored limits).
    pub fn merge(&self, over: &LimitSpecs) -> LimitSpecs {
        LimitSpecs {
            budget: over.budget.or(self.budget),
            exe_quota: over.exe_quota.or(self.exe_quota),
            build_max_age: over.build_max_age.or(self.build_max_age),
            exe_max_age: over.exe_max_age.or(self.exe_max_age),
            grace: over.grace.or(self.grace),
            min_free: over.min_free.or(self.min_free),
        }
    }

    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == LimitSpecs::default()
    }

    /// The limits in bytes and seconds, with defaults filled in, given the
    /// total size of the filesystem holding the cache.
    pub fn resolve(&self, fs_total: u64) -> Limits {
        Limits {
            budget: self.budget.map(|s| s.resolve(fs_total)),
            exe_quota: self.exe_quota.map(|s| s.resolve(fs_total)),
            build_max_age: self
                .build_max_age
                .map_or(Some(DEFAULT_BUILD_MAX_AGE), AgeSpec::get),
            exe_max_age: self
                .exe_max_age
                .map_or(Some(DEFAULT_EXE_MAX_AGE), AgeSpec::get),
            grace: self.grace.unwrap_or(DEFAULT_GRACE),
            min_free: self.min_free.map(|s| s.resolve(fs_total)),
        }
    }
}

/// Validated limits, in allocated bytes and seconds: what the policy takes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    /// Total budget for all entries, allocated bytes.
    pub budget: Option<u64>,
    /// Quota for the exe tier, allocated bytes.
    pub exe_quota: Option<u64>,
    /// Maximum time since last use for build entries.
    pub build_max_age: Option<i64>,
    /// Maximum time since last use for executables.
    pub exe_max_age: Option<i64>,
    /// Nothing used within `grace + GO_MTIME_LAG` of now is evicted.
    pub grace: i64,
    /// While the filesystem has less free than this, evict more.
    pub min_free: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        LimitSpecs::default().resolve(0)
    }
}

impl Limits {
    /// How recent a use protects an entry: the grace period plus Go's mtime
    /// lag.
    pub fn protection_window(&self) -> i64 {
        self.grace.max(0).saturating_add(GO_MTIME_LAG)
    }

    /// These limits with the budget and the exe quota scaled by `share`
    /// (0.0 to 1.0): the target of a trim that should leave room for the
    /// next inserts (see `policy::HEADROOM`). Ages, grace and the
    /// free-space floor stay as they are.
    pub fn scaled(&self, share: f64) -> Limits {
        let scale = |v: u64| (v as f64 * share.clamp(0.0, 1.0)) as u64;
        Limits {
            budget: self.budget.map(scale),
            exe_quota: self.exe_quota.map(scale),
            ..self.clone()
        }
    }
}

impl fmt::Display for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = |v: Option<u64>| {
            v.map_or("none".to_string(), |b| {
                humansize::format_size(b, humansize::BINARY)
            })
        };
        let age = |v: Option<i64>| v.map_or("off".to_string(), format_duration);
        writeln!(f, "budget          {}", size(self.budget))?;
        writeln!(f, "exe quota       {}", size(self.exe_quota))?;
        writeln!(f, "build max age   {}", age(self.build_max_age))?;
        writeln!(f, "exe max age     {}", age(self.exe_max_age))?;
        writeln!(
            f,
            "grace           {} (+ Go's 1h mtime lag)",
            format_duration(self.grace)
        )?;
        write!(f, "min free        {}", size(self.min_free))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_touches_the_budget_and_the_quota_only() {
        let l = Limits {
            budget: Some(1000),
            exe_quota: Some(100),
            min_free: Some(50),
            ..Limits::default()
        };
        let s = l.scaled(0.9);
        assert_eq!(
            (s.budget, s.exe_quota, s.min_free),
            (Some(900), Some(90), Some(50))
        );
        assert_eq!((s.build_max_age, s.grace), (l.build_max_age, l.grace));
        assert_eq!(l.scaled(2.0), l, "never above the limit");
    }

    #[test]
    fn sizes_parse_as_people_write_them() {
        let b = |s: &str| SizeSpec::parse(s).unwrap();
        assert_eq!(b("10GiB"), SizeSpec::Bytes(10 << 30));
        assert_eq!(b("10G"), SizeSpec::Bytes(10 << 30));
        assert_eq!(b("10g"), SizeSpec::Bytes(10 << 30));
        assert_eq!(b("500MB"), SizeSpec::Bytes(500_000_000));
        assert_eq!(b("1.5GiB"), SizeSpec::Bytes(3 << 29));
        assert_eq!(b("1048576"), SizeSpec::Bytes(1 << 20));
        assert_eq!(b("0"), SizeSpec::Bytes(0));
        assert_eq!(b(" 2 KiB "), SizeSpec::Bytes(2048));
        assert_eq!(b("10%"), SizeSpec::Percent(10.0));
        assert_eq!(b("10%").resolve(1000), 100);
        for bad in [
            "",
            "-1G",
            "G",
            "10XB",
            "1e3",
            "120%",
            "-5%",
            "NaN%",
            "99999999999T",
            "1.2.3G",
        ] {
            let e = SizeSpec::parse(bad).unwrap_err().to_string();
            assert!(
                e.contains("invalid size") && e.contains("examples"),
                "{bad:?}: {e}"
            );
        }
    }

    /// Issue 13, item 11: each piece of bad input gets its own reason.
    #[test]
    fn bad_sizes_and_durations_say_what_is_wrong() {
        let size = |s: &str| SizeSpec::parse(s).unwrap_err().to_string();
        assert!(
            size("-5G").contains("cannot be negative"),
            "{}",
            size("-5G")
        );
        for e in ["1e400", "1e3", "2E+9", "1e-3"] {
            assert!(
                size(e).contains("exponents are not accepted"),
                "{e}: {}",
                size(e)
            );
        }
        for f in ["1.5", "1.5B", "0.5b"] {
            assert!(size(f).contains("a fraction of a byte"), "{f}: {}", size(f));
        }
        // A fraction of a unit is whole bytes (rounded); 2.0 bytes is 2.
        assert_eq!(SizeSpec::parse("1.5K").ok(), Some(SizeSpec::Bytes(1536)));
        assert_eq!(SizeSpec::parse("1.1K").ok(), Some(SizeSpec::Bytes(1126)));
        assert_eq!(SizeSpec::parse("2.0").ok(), Some(SizeSpec::Bytes(2)));
        // "10 EB" is not an exponent, just a unit we do not know.
        assert!(size("10EB").contains("unknown unit"), "{}", size("10EB"));

        // A bare 0 would empty the cache: 0B, 0G, 0% say it is meant.
        for zero in ["0", " 0 ", "00", "0.0"] {
            let e = parse_cap(zero, "every entry").unwrap_err().to_string();
            assert!(
                e.contains("would remove every entry") && e.contains("0B"),
                "{zero:?}: {e}"
            );
        }
        for meant in ["0B", "0b", "0G", "0%"] {
            assert_eq!(parse_cap(meant, "x").unwrap().resolve(1000), 0, "{meant}");
        }
        assert_eq!(parse_cap("10G", "x").ok(), Some(SizeSpec::Bytes(10 << 30)));
        assert!(
            parse_cap("1.5", "x")
                .unwrap_err()
                .to_string()
                .contains("fraction")
        );

        let dur = |s: &str| parse_duration(s).unwrap_err().to_string();
        for m in ["1mo", "1M", "2months", "1y", "1year", "1yr", "1d1mo"] {
            assert!(dur(m).contains("no fixed length"), "{m}: {}", dur(m));
        }
        assert_eq!(parse_duration("1m").unwrap(), 60, "m is still minutes");
        assert!(dur("-1h").contains("cannot be negative"), "{}", dur("-1h"));
        assert!(
            AgeSpec::parse("1mo")
                .unwrap_err()
                .to_string()
                .contains("no fixed length")
        );
        for off in ["off", "none", " off "] {
            let e = parse_grace(off).unwrap_err().to_string();
            assert!(
                e.contains("cannot be") && e.contains("shortest is 0"),
                "{off:?}: {e}"
            );
        }
        assert_eq!(parse_grace("0").ok(), Some(0));
        assert_eq!(parse_grace("2h").ok(), Some(7200));
    }

    #[test]
    fn durations_parse_as_people_write_them() {
        assert_eq!(parse_duration("90m").unwrap(), 5400);
        assert_eq!(parse_duration("36h").unwrap(), 36 * 3600);
        assert_eq!(parse_duration("2d").unwrap(), 2 * DAY);
        assert_eq!(parse_duration("1w").unwrap(), 7 * DAY);
        assert_eq!(parse_duration("1h30m").unwrap(), 5400);
        assert_eq!(parse_duration("0").unwrap(), 0);
        assert_eq!(AgeSpec::parse("off").unwrap(), AgeSpec::Off);
        assert_eq!(AgeSpec::parse("2d").unwrap(), AgeSpec::Secs(2 * DAY));
        for bad in ["", "5", "-1h", "1 fortnight", "h"] {
            assert!(
                parse_duration(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("examples"),
                "{bad:?}"
            );
        }
        assert_eq!(format_duration(5 * DAY), "5d");
        assert_eq!(format_duration(3600), "1h");
    }

    #[test]
    fn flags_override_stored_limits_and_defaults_fill_the_rest() {
        let stored = LimitSpecs {
            budget: Some(SizeSpec::Bytes(100)),
            exe_quota: Some(SizeSpec::Percent(1.0)),
            ..Default::default()
        };
        let flags = LimitSpecs {
            budget: Some(SizeSpec::Bytes(50)),
            exe_max_age: Some(AgeSpec::Off),
            ..Default::default()
        };
        let merged = stored.merge(&flags);
        let json = serde_json::to_string(&merged).unwrap();
        assert_eq!(serde_json::from_str::<LimitSpecs>(&json).unwrap(), merged);
        let l = merged.resolve(10_000);
        assert_eq!(l.budget, Some(50));
        assert_eq!(l.exe_quota, Some(100));
        assert_eq!(l.build_max_age, Some(5 * DAY));
        assert_eq!(l.exe_max_age, None);
        assert_eq!(l.grace, HOUR);
        assert_eq!(l.protection_window(), 2 * HOUR);
        let json = serde_json::to_string(&stored).unwrap();
        assert_eq!(serde_json::from_str::<LimitSpecs>(&json).unwrap(), stored);
    }
}
