//! The records the index keeps and the policy reads.
//!
//! Byte accounting (a decision, written down): budgets are in *allocated*
//! bytes, `st_blocks * 512`, which is what `du` shows and what fills a disk.
//! A 175-byte action entry allocates a whole block (4 KiB on ext4), so on a
//! real cache allocated and apparent sizes differ a lot; reports show both.
//! An executable entry's bytes are those of its directory plus the one file
//! inside it.
//!
//! Times are integer Unix seconds. Go only refreshes an entry's mtime when it
//! is over an hour old, so a last use read from an mtime lags by up to an
//! hour; the grace period accounts for that.

use crate::layout::{EntryName, Id};

/// Unix time in whole seconds (UTC). The library never reads the clock: each
/// entry point takes `now`, and the binary reads the clock once.
pub type UnixTime = i64;

/// What a cache entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `<id>-a`: an action entry, mapping an action ID to an output.
    Action,
    /// `<id>-d`, a regular file: an output (archive, export data, test log…).
    Output,
    /// `<id>-d`, a directory with one executable inside (`go run`, `go tool`).
    Exe,
}

impl Kind {
    /// The tier the kind belongs to.
    pub fn tier(self) -> Tier {
        match self {
            Kind::Exe => Tier::Exe,
            Kind::Action | Kind::Output => Tier::Build,
        }
    }

    /// The integer stored in the index.
    pub fn to_db(self) -> i64 {
        match self {
            Kind::Action => 0,
            Kind::Output => 1,
            Kind::Exe => 2,
        }
    }

    /// The kind for an integer stored in the index.
    pub fn from_db(v: i64) -> Option<Kind> {
        match v {
            0 => Some(Kind::Action),
            1 => Some(Kind::Output),
            2 => Some(Kind::Exe),
            _ => None,
        }
    }

    /// A short lowercase name, for output.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Action => "action",
            Kind::Output => "output",
            Kind::Exe => "exe",
        }
    }
}

/// The two tiers that have limits of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Everything but executables: outputs and action entries.
    Build,
    /// Cached executables (Go 1.24+ `go run` / `go tool`).
    Exe,
}

impl Tier {
    /// Both tiers, in report order.
    pub const ALL: [Tier; 2] = [Tier::Build, Tier::Exe];

    /// A short lowercase name, for output.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Build => "build",
            Tier::Exe => "exe",
        }
    }
}

/// One cache entry as the index knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The entry's validated name (and so its path under the cache dir).
    pub name: EntryName,
    /// Action, output or executable.
    pub kind: Kind,
    /// Apparent size in bytes (`st_size`; for an exe, the executable's).
    pub apparent: u64,
    /// Allocated size in bytes (`st_blocks * 512`; for an exe, directory
    /// plus executable).
    pub allocated: u64,
    /// The mtime seen on disk (Unix seconds).
    pub mtime: UnixTime,
    /// The newest use gocache knows of: mtime, a use the wrapper recorded,
    /// or a GOCACHEPROG request.
    pub last_use: UnixTime,
    /// Uses recorded by the wrapper or GOCACHEPROG (an mtime alone is no hit).
    pub hits: u64,
    /// When gocache first saw the entry.
    pub first_seen: UnixTime,
    /// For an action entry: the output it names; `None` when the entry is
    /// corrupt (see `problem`).
    pub output: Option<Id>,
    /// For an executable: the program's file name inside the directory.
    pub program: Option<String>,
    /// Why the entry is not trusted (a malformed action entry), if it is not.
    pub problem: Option<String>,
}

impl Entry {
    /// The entry's tier.
    pub fn tier(&self) -> Tier {
        self.kind.tier()
    }
}

/// Whose a non-entry item under the cache directory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OtherClass {
    /// Go's own files: `README`, `trim.txt`, `testexpire.txt`, `fuzz/`.
    Go,
    /// gocache's own directory (index, lock).
    Gocache,
    /// Anything else: stray or temp files, symlinks, fifos, odd entries.
    Odd,
}

impl OtherClass {
    /// The name stored in the index.
    pub fn as_str(self) -> &'static str {
        match self {
            OtherClass::Go => "go",
            OtherClass::Gocache => "gocache",
            OtherClass::Odd => "odd",
        }
    }

    /// The class for a stored name.
    pub fn parse(s: &str) -> OtherClass {
        match s {
            "go" => OtherClass::Go,
            "gocache" => OtherClass::Gocache,
            _ => OtherClass::Odd,
        }
    }
}

/// Something under the cache directory that is not a well-formed entry:
/// stray or temp files, symlinks, fifos, an `-a` that is a directory, an
/// executable directory that does not hold exactly one regular file.
/// Counted and reported, never followed, never removed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Other {
    /// Path relative to the cache directory.
    pub path: String,
    /// Whose it is.
    pub class: OtherClass,
    /// What it is and why it is odd, for reports.
    pub what: String,
    /// Apparent bytes (0 for links and special files).
    pub apparent: u64,
    /// Allocated bytes.
    pub allocated: u64,
}

/// Count and bytes of a set of entries (or other items).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Bytes {
    /// Number of entries.
    pub entries: u64,
    /// Sum of apparent sizes.
    pub apparent_bytes: u64,
    /// Sum of allocated sizes (what `du` counts; budgets use this).
    pub allocated_bytes: u64,
}

impl Bytes {
    /// Counts one item of these sizes in.
    pub fn add(&mut self, apparent: u64, allocated: u64) {
        self.entries += 1;
        self.apparent_bytes = self.apparent_bytes.saturating_add(apparent);
        self.allocated_bytes = self.allocated_bytes.saturating_add(allocated);
    }

    /// Counts one entry in.
    pub fn add_entry(&mut self, e: &Entry) {
        self.add(e.apparent, e.allocated);
    }

    /// Counts one entry out (never below zero).
    pub fn remove_entry(&mut self, e: &Entry) {
        self.entries = self.entries.saturating_sub(1);
        self.apparent_bytes = self.apparent_bytes.saturating_sub(e.apparent);
        self.allocated_bytes = self.allocated_bytes.saturating_sub(e.allocated);
    }
}

/// Bytes per tier, and of both: what the index keeps per subdirectory, the
/// policy's "before" and "after", and what the limits are checked against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    /// Outputs and action entries.
    pub build: Bytes,
    /// Executables.
    pub exe: Bytes,
    /// Both.
    pub total: Bytes,
}

impl Totals {
    /// Adds an entry to its tier and the total.
    pub fn add(&mut self, e: &Entry) {
        let t = match e.tier() {
            Tier::Build => &mut self.build,
            Tier::Exe => &mut self.exe,
        };
        t.add_entry(e);
        self.total.add_entry(e);
    }

    /// Takes an entry out of its tier and the total.
    pub fn remove(&mut self, e: &Entry) {
        let t = match e.tier() {
            Tier::Build => &mut self.build,
            Tier::Exe => &mut self.exe,
        };
        t.remove_entry(e);
        self.total.remove_entry(e);
    }

    /// Totals from the two tiers' figures (the total is their sum).
    pub fn from_tiers(build: Bytes, exe: Bytes) -> Totals {
        Totals {
            build,
            exe,
            total: Bytes {
                entries: build.entries + exe.entries,
                apparent_bytes: build.apparent_bytes.saturating_add(exe.apparent_bytes),
                allocated_bytes: build.allocated_bytes.saturating_add(exe.allocated_bytes),
            },
        }
    }
}

/// One go command served by `gocache prog`, as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProgSession {
    /// When it started (Unix seconds).
    pub started: UnixTime,
    /// When it closed.
    pub ended: UnixTime,
    /// Gets answered.
    pub gets: u64,
    /// Hits.
    pub hits: u64,
    /// Misses.
    pub misses: u64,
    /// Puts stored.
    pub puts: u64,
    /// Bytes stored.
    pub put_bytes: u64,
    /// Requests answered with an error.
    pub errors: u64,
    /// What the remote tier did (`gocache prog --remote`); `None` without
    /// one.
    pub remote: Option<ProgRemote>,
}

/// What a `gocache prog --remote` session's remote tier did. `hits` and
/// `misses` are of the store, asked on level one's misses: a session's
/// `misses` include its remote `hits`, which go saw as hits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProgRemote {
    /// Local misses the store answered (verified, written into level one).
    pub hits: u64,
    /// Local misses the store did not have.
    pub misses: u64,
    /// Objects refused because they are not what their names say.
    pub refused: u64,
    /// Store errors (fetches and uploads).
    pub errors: u64,
    /// Entries uploaded before `close` was answered.
    pub uploaded: u64,
    /// Puts not uploaded because the queue was full.
    pub dropped: u64,
}

/// Made-up entries for unit tests: one fixture, adjusted per test.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::layout::Suffix;

    /// An entry named by `id` (all 32 bytes of its ID), of `kind`: 175
    /// bytes apparent, 4 KiB allocated, used at time 0, first seen at 0,
    /// naming no output; an executable's program is `prog<id>`.
    pub(crate) fn entry(id: u8, kind: Kind) -> Entry {
        Entry {
            name: EntryName {
                id: Id([id; 32]),
                suffix: if kind == Kind::Action {
                    Suffix::Action
                } else {
                    Suffix::Data
                },
            },
            kind,
            apparent: 175,
            allocated: 4096,
            mtime: 0,
            last_use: 0,
            hits: 0,
            first_seen: 0,
            output: None,
            program: (kind == Kind::Exe).then(|| format!("prog{id}")),
            problem: None,
        }
    }

    impl Entry {
        /// With these sizes.
        pub(crate) fn sized(mut self, apparent: u64, allocated: u64) -> Entry {
            (self.apparent, self.allocated) = (apparent, allocated);
            self
        }

        /// Last used (and its mtime set) at `t`.
        pub(crate) fn used_at(mut self, t: UnixTime) -> Entry {
            (self.mtime, self.last_use) = (t, t);
            self
        }

        /// First seen at `t`.
        pub(crate) fn seen_at(mut self, t: UnixTime) -> Entry {
            self.first_seen = t;
            self
        }

        /// An action naming the output whose ID is all `output`.
        pub(crate) fn naming(mut self, output: Option<u8>) -> Entry {
            self.output = output.map(|o| Id([o; 32]));
            self
        }
    }
}
