//! The README documents the JSON each command prints; these tests keep the
//! tables and the output in step (every field printed is documented, and
//! every documented field is printed).

use std::collections::BTreeSet;

use crate::support::*;

/// The field names in the first column of the table that follows the line
/// `heading` in the README: `` `a`, `b[]` `` gives a and b.
fn documented_fields(heading: &str) -> BTreeSet<String> {
    let readme = include_str!("../README.md");
    let start = readme
        .lines()
        .position(|l| l == heading)
        .unwrap_or_else(|| panic!("no line {heading:?} in the README"));
    readme
        .lines()
        .skip(start + 1)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // the header and the |---| line
        .flat_map(|row| {
            let first = row.split('|').nth(1).unwrap_or_default();
            // `kinds.{action,output,exe}` documents the top-level `kinds`.
            let mut plain = String::new();
            let mut depth = 0;
            for c in first.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    c if depth == 0 => plain.push(c),
                    _ => {}
                }
            }
            plain
                .split(',')
                .map(|f| {
                    let f = f.trim().trim_matches('`').trim_end_matches("[]");
                    f.split('.').next().unwrap_or_default().to_string()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn keys(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn the_json_of_scan_limits_and_hook_is_documented_field_by_field() {
    let sb = Sandbox::with_template();
    let scan = json(&run_ok(sb.gocache(["scan", "--json"])));
    assert_eq!(keys(&scan), documented_fields("`scan --json`:"));
    let limits = json(&run_ok(sb.gocache([
        "limits",
        "--json",
        "--budget",
        "10GiB",
        "--exe-quota",
        "5%",
        "--min-free",
        "1G",
        "--build-max-age",
        "off",
        "--exe-max-age",
        "1d",
        "--grace",
        "2h",
    ])));
    assert_eq!(keys(&limits), documented_fields("`limits --json`:"));
    // Every limit appears in both, as the table says.
    let all: BTreeSet<String> = [
        "budget",
        "exe_quota",
        "min_free",
        "build_max_age",
        "exe_max_age",
        "grace",
    ]
    .map(String::from)
    .into();
    assert_eq!(keys(&limits["stored"]), all);
    assert_eq!(keys(&limits["effective"]), all);
    assert_eq!(limits["stored"]["budget"]["bytes"], 10u64 << 30);
    assert_eq!(limits["stored"]["exe_quota"]["percent"], 5.0);
    assert_eq!(limits["stored"]["build_max_age"], "off");
    assert_eq!(limits["stored"]["exe_max_age"]["secs"], 86400);
    assert_eq!(limits["stored"]["grace"], 7200);
    assert_eq!(
        limits["effective"]["build_max_age"],
        serde_json::Value::Null
    );
    let hook = json(&run_ok(sb.gocache(["hook", "--json"])));
    assert_eq!(keys(&hook), documented_fields("`hook --json`:"));
    let dir = json(&run_ok(sb.gocache(["dir", "--json"])));
    assert_eq!(keys(&dir), documented_fields("`dir --json`:"));
}

#[test]
fn the_json_of_stats_is_documented_field_by_field() {
    let sb = Sandbox::with_template();
    let stats = json(&run_ok(sb.gocache(["stats", "--json"])));
    // index_problem is there (null) when the index is fine, and documented
    // with index_mode.
    let mut printed = keys(&stats);
    printed.remove("index_problem");
    assert_eq!(printed, documented_fields("### `stats --json`"));
    let exe = stats["largest_exes"][0].as_object().unwrap();
    for field in [
        "program",
        "import_path",
        "entry",
        "apparent_bytes",
        "allocated_bytes",
        "last_use",
        "hits",
    ] {
        assert!(exe.contains_key(field), "{field}");
    }
    let against: std::collections::BTreeSet<String> = keys(&stats["against_limits"]);
    let documented: std::collections::BTreeSet<String> = [
        "cache_bytes",
        "budget_share",
        "exe_bytes",
        "exe_quota_share",
        "free_bytes",
        "met",
        "trim_would_remove",
        "unmet",
    ]
    .map(String::from)
    .into();
    assert_eq!(against, documented);
}
