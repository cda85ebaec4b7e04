//! The words a plan gives for a limit it could not meet.

/// Why a budget stays unmet once every entry outside the grace period is
/// chosen: what is left, each part with its bytes, the larger first. The
/// entries left (`kept`) were all used within the grace period; the fixed
/// bytes beside them cannot be evicted, and may exceed the budget alone.
pub(super) fn budget_reason(kept: u64, fixed: u64, budget: u64) -> String {
    let entries = (kept > 0).then(|| {
        (
            kept,
            format!(
                "{} of entries used within the grace period",
                crate::report::human(kept)
            ),
        )
    });
    let beside = (fixed > 0).then(|| {
        let alone = if fixed > budget {
            ", more than the budget on their own"
        } else {
            ""
        };
        (
            fixed,
            format!(
                "{} of fixed bytes beside the entries (directories, Go's files, the index){alone}",
                crate::report::human(fixed)
            ),
        )
    });
    let mut parts: Vec<(u64, String)> = entries.into_iter().chain(beside).collect();
    parts.sort_by_key(|p| std::cmp::Reverse(p.0));
    let parts: Vec<String> = parts.into_iter().map(|(_, p)| p).collect();
    format!("what is left is {}", parts.join(" and "))
}
