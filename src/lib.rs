//! gocache keeps Go's build cache (`$GOCACHE`) within a byte budget.
//!
//! - [`layout`]: where the cache is and what its names mean (no I/O).
//! - [`index`]: the SQLite index of every entry.
//! - [`scan`]: reconciles the index with the disk, incrementally.
//! - [`stats`]: what the cache holds.
//! - [`limits`] and [`policy`]: a pure function from entries, limits and
//!   `now` to a plan of evictions with reasons.
//! - [`trim`]: executes a plan safely, under a lock.
//! - [`wrapper`]: `gocache go`; the post-insert hook is [`scan`] (with a
//!   [`scan::HeadStart`]) then [`trim::run`] over the limits.
//! - [`prog`]: a GOCACHEPROG server over Go's own on-disk layout.
//! - [`remote`]: a shared second tier in an S3-compatible object store.
//! - [`synth`]: deterministic synthetic caches for tests and benchmarks.
//! - [`threads`]: helper threads that start beside their creator.
//!
//! See `DESIGN.md` in the repository for the facts about Go's cache this
//! crate relies on.

#![warn(missing_docs)]

pub mod error;
pub mod index;
pub mod layout;
pub mod limits;
pub mod model;
pub mod policy;
pub mod prog;
pub mod remote;
pub mod report;
pub mod scan;
pub mod stats;
pub mod synth;
pub mod threads;
pub mod trim;
pub mod wrapper;

pub use error::{Error, Result};
pub use model::{Entry, Kind, Other, OtherClass, Tier, UnixTime};
