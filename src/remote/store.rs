//! The object store behind the remote tier, as a small trait of our own, so
//! that S3 today and GCS, Azure or a plain HTTP cache later plug in behind
//! the same five calls.
//!
//! Calls are blocking: `gocache prog` serves the go command from threads,
//! and a blocking client with connection reuse answers a get in one round
//! trip without an async runtime in between. Every call is bounded by the
//! implementation's timeouts; none may wait forever.
//!
//! Keys are relative to the store's root (for S3, `s3://BUCKET/PREFIX`
//! becomes the root), so callers never see or build the prefix.

use std::io::{Read, Write};

use crate::model::UnixTime;

/// What a listing says about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The key, relative to the store's root.
    pub key: String,
    /// Its length in bytes.
    pub size: u64,
    /// When it was last written (uploaded), Unix seconds, by the store's
    /// clock.
    pub last_modified: UnixTime,
}

/// Opens a fresh reader of a put's body, for each attempt.
pub type OpenBody<'a> = dyn Fn() -> std::io::Result<Box<dyn Read + 'a>> + Sync + 'a;

/// The body of a put: bytes in memory, an open file (read with positioned
/// reads, so a retry can start again and the file's offset is never
/// moved), or a stream made afresh for each attempt (a compressed file).
#[derive(Clone, Copy)]
pub enum PutBody<'a> {
    /// Bytes in memory.
    Bytes(&'a [u8]),
    /// The first `len` bytes of an open file.
    File {
        /// The file, open for reading.
        file: &'a std::fs::File,
        /// How many bytes to send, from offset 0.
        len: u64,
    },
    /// Exactly `len` bytes from a reader that `open` makes; a reader that
    /// gives more or fewer fails the put (a local error).
    Stream {
        /// How many bytes the reader gives.
        len: u64,
        /// Makes the reader, once per attempt.
        open: &'a OpenBody<'a>,
    },
}

impl std::fmt::Debug for PutBody<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PutBody::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            PutBody::File { len, .. } => write!(f, "File({len} bytes)"),
            PutBody::Stream { len, .. } => write!(f, "Stream({len} bytes)"),
        }
    }
}

impl PutBody<'_> {
    /// The number of bytes the put sends.
    pub fn len(&self) -> u64 {
        match self {
            PutBody::Bytes(b) => b.len() as u64,
            PutBody::File { len, .. } | PutBody::Stream { len, .. } => *len,
        }
    }

    /// True when the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a [`ObjectStore::delete_many`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteReport {
    /// Keys the store reported deleted (or already absent).
    pub deleted: u64,
    /// Keys it refused, with the store's reason.
    pub failed: Vec<(String, String)>,
}

/// An object's user metadata: short `name: value` pairs stored with it
/// (`x-amz-meta-<name>` on S3), names in lowercase ASCII.
pub type Metadata = Vec<(String, String)>;

/// The value of metadata `name` in `meta`.
pub fn meta_value<'m>(meta: &'m Metadata, name: &str) -> Option<&'m str> {
    meta.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A blocking object store. Implementations must be safe to share between
/// threads and must bound every call with timeouts.
pub trait ObjectStore: Send + Sync {
    /// Streams object `key` into `sink`. `Ok(None)` when it does not exist;
    /// otherwise the number of bytes written and the object's metadata. An
    /// object longer than `max_len` is refused with
    /// [`StoreError::TooLarge`] (a bad object in a bucket must not fill a
    /// disk); what was written to `sink` by then is the caller's to
    /// discard.
    fn get_with_meta(
        &self,
        key: &str,
        max_len: u64,
        sink: &mut dyn Write,
    ) -> Result<Option<(u64, Metadata)>, StoreError>;

    /// [`ObjectStore::get_with_meta`] without the metadata.
    fn get(
        &self,
        key: &str,
        max_len: u64,
        sink: &mut dyn Write,
    ) -> Result<Option<u64>, StoreError> {
        Ok(self.get_with_meta(key, max_len, sink)?.map(|(n, _)| n))
    }

    /// Writes object `key` (replacing any object of that key) with user
    /// metadata `meta` (names: lowercase ASCII letters, digits, `-`).
    fn put_with_meta(
        &self,
        key: &str,
        body: PutBody<'_>,
        meta: &[(&str, &str)],
    ) -> Result<(), StoreError>;

    /// Writes object `key` (replacing any object of that key).
    fn put(&self, key: &str, body: PutBody<'_>) -> Result<(), StoreError> {
        self.put_with_meta(key, body, &[])
    }

    /// The object's size and upload time, or `None` when it does not exist.
    fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError>;

    /// Calls `each` for every object whose key starts with `prefix`, in key
    /// order, page by page. Returns how many there were.
    fn list(&self, prefix: &str, each: &mut dyn FnMut(ObjectMeta)) -> Result<u64, StoreError>;

    /// Deletes `keys` (in batches as the store allows). A key that is
    /// already gone counts as deleted.
    fn delete_many(&self, keys: &[String]) -> Result<DeleteReport, StoreError>;

    /// The store's name for messages (`s3://bucket/prefix at https://…`).
    fn describe(&self) -> String;
}

/// Reads a whole (small) object into memory.
pub fn get_bytes(
    store: &dyn ObjectStore,
    key: &str,
    max_len: u64,
) -> Result<Option<Vec<u8>>, StoreError> {
    let mut buf = Vec::new();
    Ok(store.get(key, max_len, &mut buf)?.map(|_| buf))
}

/// Lists every object under `prefix` into a vector.
pub fn list_all(store: &dyn ObjectStore, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
    let mut out = Vec::new();
    store.list(prefix, &mut |m| out.push(m))?;
    Ok(out)
}

/// What a store call was doing, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Reading an object.
    Get,
    /// Writing an object.
    Put,
    /// Reading an object's size and time.
    Head,
    /// Listing objects.
    List,
    /// Deleting objects.
    Delete,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::Get => "GET",
            Op::Put => "PUT",
            Op::Head => "HEAD",
            Op::List => "LIST",
            Op::Delete => "DELETE",
        })
    }
}

/// A store call that failed. Each variant says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store refused the credentials or the operation (HTTP 403).
    #[error("{store}: {op} {key} was refused ({code}: {message}); {hint}")]
    Denied {
        /// The store.
        store: String,
        /// The operation.
        op: Op,
        /// The key (or prefix).
        key: String,
        /// The store's error code (`AccessDenied`, `InvalidAccessKeyId`, …).
        code: String,
        /// The store's message.
        message: String,
        /// What to do.
        hint: &'static str,
    },
    /// The bucket does not exist.
    #[error(
        "{store}: the bucket does not exist (NoSuchBucket); create it, or check the URL and AWS_ENDPOINT_URL"
    )]
    NoSuchBucket {
        /// The store.
        store: String,
    },
    /// Any other HTTP error status.
    #[error("{store}: {op} {key} failed with HTTP {status} ({code}: {message})")]
    Http {
        /// The store.
        store: String,
        /// The operation.
        op: Op,
        /// The key (or prefix).
        key: String,
        /// The HTTP status.
        status: u16,
        /// The store's error code, when it sent one.
        code: String,
        /// The store's message, when it sent one.
        message: String,
    },
    /// The store could not be reached, or did not answer in time.
    #[error(
        "{store}: {op} {key}: {cause} (is the store up and AWS_ENDPOINT_URL right? every request times out after {timeout_s} s, or {stall_s} s without a byte)"
    )]
    Unreachable {
        /// The store.
        store: String,
        /// The operation.
        op: Op,
        /// The key (or prefix).
        key: String,
        /// The request's whole time limit, in seconds.
        timeout_s: u64,
        /// The longest wait for one read or write, in seconds.
        stall_s: u64,
        /// The transport error. Not a `#[source]`: the message holds it
        /// already, and a chain printed with `{:#}` would say it twice.
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The object is longer than the caller allows.
    #[error("{store}: {key} is {size} bytes, more than the {limit} expected; refused")]
    TooLarge {
        /// The store.
        store: String,
        /// The key.
        key: String,
        /// Its size (at least).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The store answered something that is not what S3 sends.
    #[error("{store}: {op} {key}: unexpected answer: {what}")]
    BadResponse {
        /// The store.
        store: String,
        /// The operation.
        op: Op,
        /// The key (or prefix).
        key: String,
        /// What was wrong.
        what: String,
    },
    /// Reading a put's body or writing a get's sink failed (a local error).
    #[error("{op} {key}: local I/O: {cause}")]
    Local {
        /// The operation.
        op: Op,
        /// The key.
        key: String,
        /// The I/O error (in the message; not a `#[source]`, so that it
        /// is said once).
        cause: std::io::Error,
    },
}

impl StoreError {
    /// True when the store is down, slow or overloaded (unreachable, timed
    /// out, HTTP 5xx or 429): worth pausing remote work for a while rather
    /// than asking again at once.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unreachable { .. } => true,
            StoreError::Http { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// True when the credentials or permissions are wrong: asking again
    /// will not help.
    pub fn is_denied(&self) -> bool {
        matches!(self, StoreError::Denied { .. })
    }
}
