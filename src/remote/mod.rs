//! A shared second tier for a fleet: Go's cache entries in an
//! S3-compatible object store, evicted by fleet-wide last use within a
//! bucket budget.
//!
//! The local cache stays level one, in Go's layout; the store is level two.
//! This module holds the parts that stand on their own:
//!
//! - [`location`]: parsing `s3://BUCKET/PREFIX`.
//! - [`store`]: the [`ObjectStore`] trait (get, put, head, list,
//!   delete_many; blocking, every call bounded by timeouts) and its errors.
//! - [`s3`]: the S3 implementation (rusty-s3 signing, ureq transport) and
//!   its configuration from the AWS environment variables.
//! - [`keys`]: object names (`o/<output>`, `z/<output>.<length>`,
//!   `a/<action>`, `uses/…`).
//! - [`codec`]: how outputs are stored (zstd where it pays), streamed
//!   both ways.
//! - [`uses`]: use logs and snapshots, merged without loss.
//! - [`manifest`]: session manifests, what a build used, for the next one
//!   to prefetch.
//! - [`policy`]: the pure remote eviction policy.
//! - [`trim`] and [`stats`]: `remote_trim` and `remote_stats`.
//! - [`tier`]: what `gocache prog` calls: [`tier::RemoteTier::fetch`]
//!   (verified downloads into a caller's sink, decompressed as they
//!   come), the [`tier::Uploader`] (compressing; a bounded queue drained
//!   within a deadline) and the
//!   [`tier::UseRecorder`] (use logs in batches).
//!
//! See the remote tier's section of `DESIGN.md` for the object layout, the
//! use logs, the trim's safety argument, and what happens when the store
//! is slow or down.

pub mod codec;
pub mod keys;
pub mod location;
pub mod manifest;
pub mod policy;
pub mod s3;
pub mod stats;
pub mod store;
pub mod tier;
pub mod trim;
pub mod uses;

pub use location::RemoteUrl;
pub use stats::{RemoteStats, remote_stats};
pub use store::{ObjectStore, StoreError};
pub use trim::{RemoteTrimOptions, RemoteTrimReport, remote_trim};
