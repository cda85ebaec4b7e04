//! gocache keeps Go's build cache (`$GOCACHE`) within a byte budget.
//!
//! Modules, in layers: each imports only from its own layer and the
//! layers below it, and no two modules import each other, not even
//! through others (`tests/house.rs` checks this list against the
//! imports, folders' children included).
//!
//! 1. Leaves: [`layout`] (where the cache is and what its names mean; no
//!    I/O), [`model`] (the records everyone shares), [`error`], [`report`]
//!    (progress and warnings through the caller's reporter), [`threads`]
//!    (helper threads that start beside their creator), [`limits`] (what
//!    people write, validated, and the layers it comes from), [`gomod`]
//!    (the Go module a go command works in), [`trace`] (what go did with
//!    the cache: the events the index records, the setting that bounds
//!    them, and the JSON Lines schema they are exported in and the
//!    simulator reads).
//! 2. [`cachedir`]: the one owner of the cache directory (descriptors,
//!    gocache's own names in it, sweeps, the trim lock). [`index`]: the
//!    SQLite index, the only module that knows its schema. [`policy`]: a
//!    pure function from entries, limits and `now` to a plan of evictions
//!    with reasons. [`stats`]: what the cache holds. [`synth_cache`]:
//!    deterministic synthetic Go build caches on disk, for tests and
//!    benchmarks (synthetic traces are [`sim::synth_trace`]'s).
//!    [`remote`]: a shared second tier in an S3-compatible object store
//!    (objects, fleet-wide use logs, a pure eviction policy and the trim
//!    that applies it); it stands on the leaves alone.
//! 3. [`scan`]: reconciles the index with the disk, incrementally.
//!    [`sim`]: traces of what go asked for, replayed under eviction
//!    policies and budgets against an upper bound (`gocache simulate`);
//!    it stands on the leaves, `policy` and `synth_cache`, and reads no
//!    cache and no index.
//! 4. [`execute`]: the executor, which removes a plan's victims safely.
//!    [`wrapper`]: `gocache go` but its flags and its hook (finding and
//!    running the real go, the `go run` shim).
//! 5. [`enforce`]: the one path that syncs, plans and executes against the
//!    limits: [`enforce::trim`] for `gocache trim`, [`enforce::after_use`]
//!    for the hook after each go command (a [`scan`] with a
//!    [`scan::HeadStart`] first) and `gocache prog`.
//! 6. [`prog`]: a GOCACHEPROG server over Go's own on-disk layout, with
//!    `remote` as its second tier. [`ci`]: the CI mode (`gocache ci
//!    begin` / `ci end`): runs recorded in the index, every use of a job
//!    seen exactly, trimmed by run through [`enforce::trim_by_runs`].
//! 7. [`cli`]: the command line, on top of everything: what the `gocache`
//!    and `gocache-trim` binaries run (each binary's `main` is one call).
//!
//! See `DESIGN.md` in the repository for the facts about Go's cache this
//! crate relies on, and why the layers are what they are.

#![warn(missing_docs)]

// The command line names the library `gocache::…`, as the binaries do.
extern crate self as gocache;

pub mod cachedir;
pub mod ci;
// The command line's help texts are its doc comments, whose shell lines
// are not Rust: rustdoc does not collect them as tests.
#[cfg(not(doctest))]
pub mod cli;
pub mod enforce;
pub mod error;
pub mod execute;
pub mod gomod;
pub mod index;
pub mod layout;
pub mod limits;
pub mod model;
pub mod policy;
pub mod prog;
pub mod remote;
pub mod report;
pub mod scan;
pub mod sim;
pub mod stats;
pub mod synth_cache;
pub mod threads;
pub mod trace;
pub mod wrapper;

pub use error::{Error, Result};
pub use model::{Entry, Kind, Other, OtherClass, Tier, UnixTime};
