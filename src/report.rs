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
    /// One item of something a summary counts (an entry a trim could not
    /// remove, and why): for verbose output only. The caller reports the
    /// count once, so a thousand failures are one line, not a thousand.
    fn detail(&self, _message: &str) {}
}

/// A reporter that drops everything.
pub struct Silent;

impl Reporter for Silent {}
