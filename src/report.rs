//! Progress and warnings go through a [`Reporter`] the caller supplies; the
//! library never prints.
//!
//! Numbers meant for people, in the library's messages and the binaries'
//! reports alike, take one form: counts grouped in threes ([`count`]:
//! `136,474`), sizes in binary units ([`human`]: `973.84 MiB`). JSON keeps
//! plain numbers.

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

/// A count with thousands separators: `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in binary units ("1.5 GiB").
pub fn human(bytes: u64) -> String {
    humansize::format_size(bytes, humansize::BINARY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_for_people_take_one_form() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(136_474), "136,474");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1536), "1.50 KiB");
        assert_eq!(human(1_073_668_096), "1023.93 MiB");
    }
}
