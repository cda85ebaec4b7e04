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
//!
//! # Where limits come from
//!
//! Five layers, the first that sets a limit wins ([`layer`]): a command's
//! flags, the environment (`GOCACHE_BUDGET`, … [`Limit::env_var`]), the
//! config file (`key = value` lines, [`parse_config`]), the limits stored
//! in the index (`gocache limits --budget …`), and the defaults. Cron jobs,
//! systemd units and CI runs can so set limits with no stored state. Every
//! layer is read with the same parsers as the flags, so a value means the
//! same wherever it is written. The layering is pure; reading the
//! environment and the file is `enforce::read_given`'s.

use std::fmt;
use std::path::{Path, PathBuf};

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
/// The shortest grace period a run enforces: a shorter one (`--grace 0s`)
/// is raised to it.
///
/// Go records a use in an entry's mtime only when the mtime is over an
/// hour old, so a lookup of an entry whose mtime is 59 minutes old leaves
/// no trace on disk: the only protection a plain go command's lookup has
/// is the grace period itself (the policy adds Go's hour to the window
/// so that this holds). And the go command keeps using a path it looked
/// up until it exits. So the grace period is how long a go command may
/// run beside a trim and keep every path it was handed; this floor makes
/// that at least an hour, whatever the flags.
pub const MIN_GRACE: i64 = HOUR;
/// Go refreshes an entry's mtime only when it is over an hour old
/// (`mtimeInterval`), so an mtime may lag the real last use by this much.
/// The policy always adds it to the grace period.
pub const GO_MTIME_LAG: i64 = HOUR;
/// Bytes `gocache prog` stores between two checks of the limits (it also
/// checks when a session that stored anything closes). The simulator's
/// batch policies plan at the same points.
pub const PROG_EVICT_EVERY: u64 = 16 << 20;

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

/// A size limit as given (`--budget`, `--exe-quota`, `--min-free`): a
/// size, or none (written `none`, `off` or `unlimited`: what `gocache
/// limits` shows for a size limit not set). A none given in one layer is
/// over a size given in a lower one, as an age's `off` is; stored with
/// `gocache limits`, it forgets the stored size ([`LimitSpecs::to_store`]),
/// no size limit being the default. Stored as a [`SizeSpec`] is, with
/// `"none"` besides.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SizeLimit {
    /// A number of bytes.
    Bytes(u64),
    /// A percentage (0 to 100) of the filesystem's total size.
    Percent(f64),
    /// No such limit.
    #[serde(rename = "none")]
    NoLimit,
}

impl SizeLimit {
    /// The words that mean no limit.
    pub const NONE_WORDS: [&str; 3] = ["none", "off", "unlimited"];

    /// Parses a size as [`SizeSpec::parse`] does, or `none`.
    pub fn parse(s: &str) -> Result<SizeLimit> {
        SizeLimit::parse_with(s, SizeSpec::parse)
    }

    /// Parses a cap as [`parse_cap`] does, or `none`.
    pub fn parse_cap(s: &str, what: &str) -> Result<SizeLimit> {
        SizeLimit::parse_with(s, |s| parse_cap(s, what))
    }

    fn parse_with(s: &str, size: impl Fn(&str) -> Result<SizeSpec>) -> Result<SizeLimit> {
        let word = s.trim().to_ascii_lowercase();
        if SizeLimit::NONE_WORDS.contains(&word.as_str()) {
            return Ok(SizeLimit::NoLimit);
        }
        size(s).map(SizeLimit::from)
    }

    /// The size, or `None` for no limit.
    pub fn spec(self) -> Option<SizeSpec> {
        match self {
            SizeLimit::Bytes(b) => Some(SizeSpec::Bytes(b)),
            SizeLimit::Percent(p) => Some(SizeSpec::Percent(p)),
            SizeLimit::NoLimit => None,
        }
    }
}

impl From<SizeSpec> for SizeLimit {
    fn from(s: SizeSpec) -> SizeLimit {
        match s {
            SizeSpec::Bytes(b) => SizeLimit::Bytes(b),
            SizeSpec::Percent(p) => SizeLimit::Percent(p),
        }
    }
}

/// Parses the grace period: a duration as [`parse_duration`] reads it;
/// `off` is refused with the reason.
pub fn parse_grace(s: &str) -> Result<i64> {
    if matches!(s.trim(), "off" | "none") {
        return Err(Error::Invalid(format!(
            "the grace period cannot be {:?}: it protects what running go commands use; the \
             shortest is 0, which takes effect as 1h (see `gocache help limits`)",
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
    /// Total budget for the cache, in allocated bytes. `None`: not set
    /// (no budget, unless a lower layer sets one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<SizeLimit>,
    /// Quota for the exe tier. `None`: not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe_quota: Option<SizeLimit>,
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
    pub min_free: Option<SizeLimit>,
    /// The order the size limits evict in (default: lru).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Eviction>,
}

/// The order in which the size limits (budget, exe quota, free space)
/// choose what goes; see `policy` for both.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Eviction {
    /// Least recently used first. The default for every command: replayed
    /// through the real system (`scripts/validate-sim.py`, two generated
    /// workloads, three budgets each, three replays a row), `lru`'s
    /// rebuilds through `gocache prog` cost the least CPU summed over the
    /// six budgets in one run (`lru` 38.4 s, `gd-cost` 43.2, `gdsf` 45.9)
    /// and within 0.5% of the least in another (`lru` 45.6 s, `gd-cost`
    /// 45.4, `gdsf` 47.5: `gdsf` misses least, keeping many small entries,
    /// and rebuilds dearer ones), and `lru` ran the fewest rebuilds at four
    /// of six through the hook. It needs neither hit counts nor measured
    /// costs.
    #[default]
    Lru,
    /// GreedyDual-Size-Frequency: the least `L + (hits + 1) / MiB` first.
    Gdsf,
    /// GreedyDual weighted by rebuild cost: the least
    /// `L + (hits + 1) × rebuild seconds / MiB` first.
    GdCost,
}

impl Eviction {
    /// Every policy, the default first.
    pub const ALL: [Eviction; 3] = [Eviction::Lru, Eviction::Gdsf, Eviction::GdCost];

    /// The name on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Eviction::Lru => "lru",
            Eviction::Gdsf => "gdsf",
            Eviction::GdCost => "gd-cost",
        }
    }

    /// The policy named `s`.
    pub fn parse(s: &str) -> Result<Eviction> {
        Eviction::ALL
            .into_iter()
            .find(|p| p.as_str() == s.trim())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown eviction policy {:?}: use lru, gdsf or gd-cost",
                    s.trim()
                ))
            })
    }
}

impl Eviction {
    /// True for the GreedyDual policies (`gdsf`, `gd-cost`).
    pub fn greedy_dual(self) -> bool {
        self != Eviction::Lru
    }
}

impl fmt::Display for Eviction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
            policy: over.policy.or(self.policy),
        }
    }

    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == LimitSpecs::default()
    }

    /// What `gocache limits` stores of these: the same, less a size limit
    /// of none, which is forgotten (no size limit is the default): `gocache
    /// limits --budget none` unsets the stored budget.
    pub fn to_store(&self) -> LimitSpecs {
        let set = |v: Option<SizeLimit>| v.filter(|s| *s != SizeLimit::NoLimit);
        LimitSpecs {
            budget: set(self.budget),
            exe_quota: set(self.exe_quota),
            min_free: set(self.min_free),
            ..self.clone()
        }
    }

    /// The limits in bytes and seconds, with defaults filled in, given the
    /// total size of the filesystem holding the cache.
    pub fn resolve(&self, fs_total: u64) -> Limits {
        let size = |v: Option<SizeLimit>| v.and_then(SizeLimit::spec).map(|s| s.resolve(fs_total));
        Limits {
            budget: size(self.budget),
            exe_quota: size(self.exe_quota),
            build_max_age: self
                .build_max_age
                .map_or(Some(DEFAULT_BUILD_MAX_AGE), AgeSpec::get),
            exe_max_age: self
                .exe_max_age
                .map_or(Some(DEFAULT_EXE_MAX_AGE), AgeSpec::get),
            grace: self.grace.unwrap_or(DEFAULT_GRACE).max(MIN_GRACE),
            min_free: size(self.min_free),
            policy: self.policy.unwrap_or_default(),
        }
    }
}

/// One of the six limits, or the eviction policy stored with them: its names on the command line, in the
/// environment and in the config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Limit {
    /// `--budget`.
    Budget,
    /// `--exe-quota`.
    ExeQuota,
    /// `--build-max-age`.
    BuildMaxAge,
    /// `--exe-max-age`.
    ExeMaxAge,
    /// `--grace`.
    Grace,
    /// `--min-free`.
    MinFree,
    /// `--policy` (not a limit, but set and stored as one).
    Policy,
}

impl Limit {
    /// Every limit, in the order they are shown.
    pub const ALL: [Limit; 7] = [
        Limit::Budget,
        Limit::ExeQuota,
        Limit::BuildMaxAge,
        Limit::ExeMaxAge,
        Limit::Grace,
        Limit::MinFree,
        Limit::Policy,
    ];

    /// The name in JSON and in the config file: `exe_quota`.
    pub fn key(self) -> &'static str {
        match self {
            Limit::Budget => "budget",
            Limit::ExeQuota => "exe_quota",
            Limit::BuildMaxAge => "build_max_age",
            Limit::ExeMaxAge => "exe_max_age",
            Limit::Grace => "grace",
            Limit::MinFree => "min_free",
            Limit::Policy => "policy",
        }
    }

    /// The flag: `--exe-quota`.
    pub fn flag(self) -> String {
        format!("--{}", self.key().replace('_', "-"))
    }

    /// The environment variable: `GOCACHE_EXE_QUOTA`.
    pub fn env_var(self) -> &'static str {
        match self {
            Limit::Budget => "GOCACHE_BUDGET",
            Limit::ExeQuota => "GOCACHE_EXE_QUOTA",
            Limit::BuildMaxAge => "GOCACHE_BUILD_MAX_AGE",
            Limit::ExeMaxAge => "GOCACHE_EXE_MAX_AGE",
            Limit::Grace => "GOCACHE_GRACE",
            Limit::MinFree => "GOCACHE_MIN_FREE",
            Limit::Policy => "GOCACHE_POLICY",
        }
    }

    /// The limit a config key names (`exe_quota` or `exe-quota`).
    pub fn from_key(key: &str) -> Option<Limit> {
        let key = key.replace('-', "_");
        Limit::ALL.into_iter().find(|l| l.key() == key)
    }

    /// How people read it in a table: `exe quota`.
    pub fn label(self) -> &'static str {
        match self {
            Limit::Budget => "budget",
            Limit::ExeQuota => "exe quota",
            Limit::BuildMaxAge => "build max age",
            Limit::ExeMaxAge => "exe max age",
            Limit::Grace => "grace",
            Limit::MinFree => "min free",
            Limit::Policy => "policy",
        }
    }
}

impl LimitSpecs {
    /// Sets `limit` from `text`, read as its flag reads it.
    pub fn set(&mut self, limit: Limit, text: &str) -> Result<()> {
        match limit {
            Limit::Budget => {
                self.budget = Some(SizeLimit::parse_cap(text, "every entry of the cache")?)
            }
            Limit::ExeQuota => {
                self.exe_quota = Some(SizeLimit::parse_cap(text, "every cached executable")?)
            }
            Limit::BuildMaxAge => self.build_max_age = Some(AgeSpec::parse(text)?),
            Limit::ExeMaxAge => self.exe_max_age = Some(AgeSpec::parse(text)?),
            Limit::Grace => self.grace = Some(parse_grace(text)?),
            Limit::MinFree => self.min_free = Some(SizeLimit::parse(text)?),
            Limit::Policy => self.policy = Some(Eviction::parse(text)?),
        }
        Ok(())
    }

    /// True when `limit` is set.
    pub fn has(&self, limit: Limit) -> bool {
        match limit {
            Limit::Budget => self.budget.is_some(),
            Limit::ExeQuota => self.exe_quota.is_some(),
            Limit::BuildMaxAge => self.build_max_age.is_some(),
            Limit::ExeMaxAge => self.exe_max_age.is_some(),
            Limit::Grace => self.grace.is_some(),
            Limit::MinFree => self.min_free.is_some(),
            Limit::Policy => self.policy.is_some(),
        }
    }

    /// The limits set in the environment, read by `get` (an empty
    /// variable is unset). A bad value is an error naming the variable.
    pub fn from_env(get: &dyn Fn(&str) -> Option<std::ffi::OsString>) -> Result<LimitSpecs> {
        let mut specs = LimitSpecs::default();
        for limit in Limit::ALL {
            let var = limit.env_var();
            let Some(v) = get(var) else { continue };
            let Some(text) = v.to_str() else {
                return Err(Error::Invalid(format!("{var} is not valid UTF-8")));
            };
            if text.trim().is_empty() {
                continue;
            }
            specs
                .set(limit, text)
                .map_err(|e| Error::Invalid(format!("{var}={text}: {e}")))?;
        }
        Ok(specs)
    }
}

/// The environment variable naming the config file; `off` reads none.
pub const CONFIG_ENV: &str = "GOCACHE_CONFIG";

/// The config file to read: `$GOCACHE_CONFIG` (`off`: none), else
/// `$XDG_CONFIG_HOME/gocache/config`, else `~/.config/gocache/config`.
/// Returns the path and whether it was named explicitly (then it must
/// exist); `None` when there is none to read.
pub fn config_path(get: &dyn Fn(&str) -> Option<std::ffi::OsString>) -> Option<(PathBuf, bool)> {
    if let Some(v) = get(CONFIG_ENV).filter(|v| !v.is_empty()) {
        return (v != "off").then(|| (PathBuf::from(v), true));
    }
    let base = get("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            get("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".config"))
        })?;
    Some((base.join("gocache").join("config"), false))
}

/// Reads a config file's text: one `key = value` a line, keys as the
/// flags' names (`exe-quota` or `exe_quota`), values as the flags take
/// them, optionally quoted (`budget = "10GiB"`); `#` starts a comment. An
/// unknown key, a key given twice or a bad value is an error naming the
/// file (`path`) and line.
pub fn parse_config(text: &str, path: &Path) -> Result<ConfigFile> {
    let mut specs = LimitSpecs::default();
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let bad = |why: String| Error::Invalid(format!("{}:{n}: {why}", path.display()));
        let line = match raw.find('#') {
            Some(c) => &raw[..c],
            None => raw,
        }
        .trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(bad(format!(
                "expected `key = value`, found {line:?} (keys: {})",
                keys()
            )));
        };
        let key = key.trim();
        let Some(limit) = Limit::from_key(key) else {
            return Err(bad(format!("unknown key {key:?} (keys: {})", keys())));
        };
        if lines.iter().any(|&(l, _)| l == limit) {
            return Err(bad(format!("{key} is set twice")));
        }
        let value = value.trim();
        let value = ['"', '\'']
            .iter()
            .find_map(|&q| value.strip_prefix(q).and_then(|v| v.strip_suffix(q)))
            .unwrap_or(value);
        specs
            .set(limit, value)
            .map_err(|e| bad(format!("{key}: {e}")))?;
        lines.push((limit, n));
    }
    Ok(ConfigFile {
        path: path.to_owned(),
        specs,
        lines,
    })
}

/// A config file's limits.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigFile {
    /// Where it is.
    pub path: PathBuf,
    /// The limits it sets.
    pub specs: LimitSpecs,
    /// The line each limit is set on.
    pub lines: Vec<(Limit, usize)>,
}

fn keys() -> String {
    Limit::ALL.map(Limit::key).join(", ")
}

/// Where a limit's value came from, highest precedence first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The command's flag.
    Flag,
    /// An environment variable (which).
    Env(&'static str),
    /// The config file (which, and the line).
    Config(PathBuf, usize),
    /// The limits stored in the index (`gocache limits --…`).
    Stored,
    /// Nothing set it: the default.
    Default,
}

impl Source {
    /// One word, for JSON: `flag`, `env`, `config`, `stored`, `default`.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Flag => "flag",
            Source::Env(_) => "env",
            Source::Config(..) => "config",
            Source::Stored => "stored",
            Source::Default => "default",
        }
    }

    /// For people: `--budget`, `GOCACHE_BUDGET`, `config ~/x:3`, …
    pub fn describe(&self, limit: Limit) -> String {
        match self {
            Source::Flag => limit.flag(),
            Source::Env(var) => (*var).to_string(),
            Source::Config(p, n) => format!("{}:{n}", p.display()),
            Source::Stored => "stored in the index".into(),
            Source::Default => "default".into(),
        }
    }
}

/// The layers a run's limits come from (see the module doc).
#[derive(Clone, Debug, Default)]
pub struct Layers {
    /// The command's flags.
    pub flags: LimitSpecs,
    /// The environment's.
    pub env: LimitSpecs,
    /// The config file's.
    pub config: Option<ConfigFile>,
    /// Stored in the index.
    pub stored: LimitSpecs,
}

/// Limits with the place each came from.
#[derive(Clone, Debug)]
pub struct Sourced {
    /// The limits as layered (defaults not filled in).
    pub specs: LimitSpecs,
    /// Per limit, in [`Limit::ALL`]'s order, where it came from.
    pub sources: Vec<(Limit, Source)>,
}

impl Sourced {
    /// Where `limit` came from.
    pub fn source(&self, limit: Limit) -> &Source {
        self.sources
            .iter()
            .find(|(l, _)| *l == limit)
            .map(|(_, s)| s)
            .unwrap_or(&Source::Default)
    }
}

/// Layers `layers`: for each limit, the first layer that sets it (flags,
/// environment, config file, stored), else the default. Pure.
pub fn layer(layers: &Layers) -> Sourced {
    let config = layers.config.as_ref();
    let empty = LimitSpecs::default();
    let config_specs = config.map_or(&empty, |c| &c.specs);
    let specs = layers
        .stored
        .merge(config_specs)
        .merge(&layers.env)
        .merge(&layers.flags);
    let sources = Limit::ALL
        .iter()
        .map(|&l| {
            let source = if layers.flags.has(l) {
                Source::Flag
            } else if layers.env.has(l) {
                Source::Env(l.env_var())
            } else if let Some(c) = config
                && c.specs.has(l)
            {
                let line = c.lines.iter().find(|(x, _)| *x == l).map_or(0, |(_, n)| *n);
                Source::Config(c.path.clone(), line)
            } else if layers.stored.has(l) {
                Source::Stored
            } else {
                Source::Default
            };
            (l, source)
        })
        .collect();
    Sourced { specs, sources }
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
    /// Nothing used within `grace + GO_MTIME_LAG` of now is evicted. At
    /// least [`MIN_GRACE`] once resolved from specs.
    pub grace: i64,
    /// While the filesystem has less free than this, evict more.
    pub min_free: Option<u64>,
    /// The order the size limits evict in.
    pub policy: Eviction,
}

impl Default for Limits {
    fn default() -> Self {
        LimitSpecs::default().resolve(0)
    }
}

impl Limits {
    /// How recent a use protects an entry: the grace period plus Go's mtime
    /// lag. A use exactly this long ago is still inside (see
    /// `crate::policy`, "Protection").
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
        writeln!(f, "min free        {}", size(self.min_free))?;
        write!(f, "policy          {}", self.policy)
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

    /// Each piece of bad input gets its own reason.
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

    /// Limits from the environment and a config file,
    /// layered flags > env > config > stored > defaults.
    #[test]
    fn limits_layer_flags_env_config_stored_then_defaults() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        let from_env = LimitSpecs::from_env(&env(&[
            ("GOCACHE_BUDGET", "8GiB"),
            ("GOCACHE_EXE_QUOTA", "1G"),
            ("GOCACHE_GRACE", ""),
            ("GOCACHE_BUILD_MAX_AGE", "off"),
        ]))
        .unwrap();
        assert_eq!(from_env.budget, Some(SizeLimit::Bytes(8 << 30)));
        assert_eq!(from_env.build_max_age, Some(AgeSpec::Off));
        assert_eq!(from_env.grace, None, "empty is unset");
        for (bad, needle) in [
            (
                ("GOCACHE_BUDGET", "0"),
                "GOCACHE_BUDGET=0: a limit of \"0\" would remove",
            ),
            (
                ("GOCACHE_GRACE", "off"),
                "GOCACHE_GRACE=off: the grace period cannot",
            ),
            (
                ("GOCACHE_MIN_FREE", "5 parsecs"),
                "GOCACHE_MIN_FREE=5 parsecs: invalid size",
            ),
        ] {
            let pairs: &'static [(&str, &str)] = Box::leak(Box::new([bad]));
            let e = LimitSpecs::from_env(&env(pairs)).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }

        let path = Path::new("/etc/x/config");
        let text = "# limits for this machine\n\nbudget = \"10GiB\"   # quoted, as TOML\nexe-quota = 2G\n  min_free='5%'\ngrace = 2h\n";
        let config = parse_config(text, path).unwrap();
        assert_eq!(config.specs.budget, Some(SizeLimit::Bytes(10 << 30)));
        assert_eq!(config.specs.exe_quota, Some(SizeLimit::Bytes(2 << 30)));
        assert_eq!(config.specs.min_free, Some(SizeLimit::Percent(5.0)));
        assert_eq!(config.lines[0], (Limit::Budget, 3));
        for (bad, needle) in [
            ("budget 10G", "/etc/x/config:1: expected `key = value`"),
            (
                "\nbudgte = 1G",
                "/etc/x/config:2: unknown key \"budgte\" (keys: budget, exe_quota",
            ),
            (
                "grace = 1h\ngrace = 2h",
                "/etc/x/config:2: grace is set twice",
            ),
            (
                "exe_max_age = 1mo",
                "/etc/x/config:1: exe_max_age: invalid duration",
            ),
            ("[limits]", "expected `key = value`"),
        ] {
            let e = parse_config(bad, path).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad:?}: {e}");
        }

        let stored = LimitSpecs {
            budget: Some(SizeLimit::Bytes(1)),
            exe_quota: Some(SizeLimit::Bytes(1)),
            min_free: Some(SizeLimit::Bytes(1)),
            grace: Some(1),
            exe_max_age: Some(AgeSpec::Secs(60)),
            ..Default::default()
        };
        let flags = LimitSpecs {
            budget: Some(SizeLimit::Bytes(99)),
            ..Default::default()
        };
        let layered = layer(&Layers {
            flags,
            env: from_env,
            config: Some(config),
            stored,
        });
        let s = &layered.specs;
        assert_eq!(s.budget, Some(SizeLimit::Bytes(99)));
        assert_eq!(s.exe_quota, Some(SizeLimit::Bytes(1 << 30)));
        assert_eq!(s.min_free, Some(SizeLimit::Percent(5.0)));
        assert_eq!(s.grace, Some(7200));
        assert_eq!(s.exe_max_age, Some(AgeSpec::Secs(60)));
        let src = |l| layered.source(l).describe(l);
        assert_eq!(src(Limit::Budget), "--budget");
        assert_eq!(src(Limit::ExeQuota), "GOCACHE_EXE_QUOTA");
        assert_eq!(src(Limit::MinFree), "/etc/x/config:5");
        assert_eq!(src(Limit::Grace), "/etc/x/config:6");
        assert_eq!(src(Limit::ExeMaxAge), "stored in the index");
        assert_eq!(src(Limit::BuildMaxAge), "GOCACHE_BUILD_MAX_AGE");
        let none = layer(&Layers::default());
        assert!(none.sources.iter().all(|(_, s)| *s == Source::Default));
        assert!(none.specs.is_empty());
    }

    #[test]
    fn the_config_file_is_named_by_gocache_config_or_found_in_xdg_config_home() {
        let get = |pairs: Vec<(&'static str, &'static str)>| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        assert_eq!(
            config_path(&get(vec![("GOCACHE_CONFIG", "/a/b"), ("HOME", "/h")])),
            Some((PathBuf::from("/a/b"), true))
        );
        assert_eq!(config_path(&get(vec![("GOCACHE_CONFIG", "off")])), None);
        assert_eq!(
            config_path(&get(vec![("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")])),
            Some((PathBuf::from("/x/gocache/config"), false))
        );
        assert_eq!(
            config_path(&get(vec![("XDG_CONFIG_HOME", "rel"), ("HOME", "/h")])),
            Some((PathBuf::from("/h/.config/gocache/config"), false))
        );
        assert_eq!(config_path(&get(vec![])), None);
    }

    #[test]
    fn flags_override_stored_limits_and_defaults_fill_the_rest() {
        let stored = LimitSpecs {
            budget: Some(SizeLimit::Bytes(100)),
            exe_quota: Some(SizeLimit::Percent(1.0)),
            ..Default::default()
        };
        let flags = LimitSpecs {
            budget: Some(SizeLimit::Bytes(50)),
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
        // A grace under the floor takes effect as the floor; over it, as set.
        for (set, effective) in [(0, MIN_GRACE), (600, MIN_GRACE), (3 * HOUR, 3 * HOUR)] {
            let g = LimitSpecs {
                grace: Some(set),
                ..Default::default()
            };
            assert_eq!(g.resolve(0).grace, effective, "{set}");
        }
        let json = serde_json::to_string(&stored).unwrap();
        assert_eq!(serde_json::from_str::<LimitSpecs>(&json).unwrap(), stored);
    }
}
