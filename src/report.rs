//! Progress and warnings go through a [`Reporter`] the caller supplies; the
//! library never prints.

/// Receives progress and warnings from long-running library work.
pub trait Reporter: Sync {
    /// A phase starts (`"scan"`, `"trim"`, …) with `total` units of work.
    fn start(&self, _phase: &str, _total: u64) {}
    /// `n` more units of the current phase are done.
    fn advance(&self, _n: u64) {}
    /// The current phase is over.
    fn finish(&self) {}
    /// Something the user should know that did not stop the work.
    fn warn(&self, _message: &str) {}
}

/// A reporter that drops everything.
pub struct Silent;

impl Reporter for Silent {}
