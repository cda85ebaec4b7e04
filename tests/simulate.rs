//! `gocache simulate`: replaying traces from files, what it prints, and
//! what it refuses.

use std::process::{Command, Output};

use crate::support::*;

fn simulate(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(gocache_bin())
        .arg("simulate")
        .args(args)
        .current_dir(dir)
        .env_remove("GOCACHE")
        .output()
        .unwrap()
}

#[test]
fn a_saved_trace_replays_to_the_same_report_and_the_plot_is_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let synth = run_ok(
        Command::new(gocache_bin())
            .args(["simulate", "--synthetic", "--days", "1", "--json"])
            .args(["--save-trace", "t.jsonl", "--plot", "p.svg"])
            .args(["--budget", "20%", "--budget", "64MiB"])
            .current_dir(dir.path()),
    );
    let from_file = run_ok(
        Command::new(gocache_bin())
            .args(["simulate", "t.jsonl", "--json"])
            .args(["--budget", "20%", "--budget", "64MiB"])
            .current_dir(dir.path()),
    );
    let (a, b) = (json(&synth), json(&from_file));
    assert_eq!(
        a["budgets"], b["budgets"],
        "the file replays as the workload did"
    );
    assert_eq!(a["unbounded"], b["unbounded"]);
    assert_eq!(b["workload"], "t.jsonl");
    let budgets = b["budgets"].as_array().unwrap();
    assert_eq!(budgets.len(), 2);
    assert_eq!(budgets[1]["budget"], 64 << 20);
    let rows = budgets[0]["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["policy"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "lru",
            "gdsf",
            "gd-cost",
            "gds",
            "lru-groups",
            "lru-actions",
            "gdsf-classic",
            "gd-cost-classic",
            "go-age",
            "belady",
            "lower",
            "bound"
        ]
    );
    let bound = rows[11]["saved_s"].as_f64().unwrap();
    // The optimum's brackets: lower (a feasible schedule, at least
    // belady's) and bound.
    let lower = rows[10]["saved_s"].as_f64().unwrap();
    assert!(lower >= rows[9]["saved_s"].as_f64().unwrap() && lower <= bound + 1e-6);
    assert!(["greedy", "belady"].contains(&rows[10]["schedule"].as_str().unwrap()));
    for r in rows.iter().filter(|r| r["has_budget"] == true) {
        // The real trim's batch forms keep what was used within the
        // protection window, as the real trim does, even over the budget
        // (and then past the bound, which holds to it); never more than
        // the unbounded cache.
        let peak = r["peak_bytes"].as_u64().unwrap();
        let saved = r["saved_s"].as_f64().unwrap();
        if ["lru", "gdsf", "gd-cost", "gds"].contains(&r["policy"].as_str().unwrap()) {
            assert!(
                peak <= b["unbounded"]["peak_bytes"].as_u64().unwrap(),
                "{r}"
            );
            assert!(
                saved <= b["unbounded"]["saved_s"].as_f64().unwrap() + 1e-6,
                "{r}"
            );
        } else {
            assert!(peak <= budgets[0]["budget"].as_u64().unwrap(), "{r}");
            assert!(saved <= bound + 1e-6, "{r}");
        }
    }
    let svg = std::fs::read_to_string(dir.path().join("p.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for label in [
        "lru (as trim)",
        "lru-actions",
        "gd-cost-classic",
        "bound (PFOO-L)",
        "lower (feasible offline)",
        "rebuild seconds saved",
    ] {
        assert!(svg.contains(label), "{label}");
    }
}

#[test]
fn the_table_fits_80_columns_and_names_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(
        Command::new(gocache_bin())
            .args(["simulate", "--synthetic", "--days", "1"])
            .args([
                "--budget",
                "30%",
                "--policy",
                "lru,gd-cost",
                "--policy",
                "bound",
            ])
            .current_dir(dir.path()),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    assert!(text.contains("Budget 30% of the footprint"), "{text}");
    assert!(text.contains("PFOO-L upper bound"), "{text}");
    assert!(!text.contains("belady"), "{text}");
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("  ") && l.ends_with("iB"))
        .collect();
    assert_eq!(rows.len(), 3, "{text}");
}

#[test]
fn bad_traces_and_flags_exit_2_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("bad.jsonl"),
        "{\"gocache_trace\":1,\"source\":\"prog\"}\n{\"t\":1,\"ev\":\"get\",\"hit\":true}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("empty.jsonl"),
        "{\"gocache_trace\":1,\"source\":\"hook\"}\n",
    )
    .unwrap();
    std::fs::write(d.join("odd.jsonl"), "{\"a\":1}\n").unwrap();
    std::fs::create_dir(d.join("traces")).unwrap();
    // Two recordings of different work: no action in common.
    let one_action = |a: &str| {
        format!(
            "{{\"gocache_trace\":1,\"source\":\"prog\"}}\n\
             {{\"t\":1,\"ev\":\"get\",\"a\":\"{a}\",\"hit\":false}}\n\
             {{\"t\":9,\"ev\":\"put\",\"a\":\"{a}\",\"o\":\"51aa0c3e9d2b7f10\",\"size\":4096,\"cost\":0.5}}\n"
        )
    };
    std::fs::write(d.join("mine.jsonl"), one_action("9f3c0e21d4a8b7c6")).unwrap();
    std::fs::write(d.join("theirs.jsonl"), one_action("0b7e99c2a1d3f456")).unwrap();
    let cases: [(&[&str], &str); 14] = [
        (&["bad.jsonl"], "bad.jsonl, line 2: a get needs \"a\""),
        (&["traces"], "traces is a directory, not a trace"),
        (
            &["odd.jsonl"],
            "odd.jsonl, line 1: \"a\" must be a string of 16 hex digits (an action's ID), not 1",
        ),
        (&["missing.jsonl"], "cannot open trace missing.jsonl"),
        (&["empty.jsonl"], "no lookups"),
        (
            &["empty.jsonl", "--policy", "fifo"],
            "unknown policy \"fifo\"",
        ),
        (
            &["empty.jsonl", "--policy", "trim-gdsf"],
            "trim's policies go by trim's names now, \"gdsf\"",
        ),
        (
            &["empty.jsonl", "--fixed-bytes", "5%"],
            "a size, not a percentage",
        ),
        (
            &["empty.jsonl", "--fixed-bytes", "2MiB..1MiB"],
            "it does not shrink",
        ),
        (
            &["empty.jsonl", "--fixed-bytes", "1MiB..5%"],
            "a size, not a percentage",
        ),
        (&["empty.jsonl", "--budget", "lots"], "invalid size"),
        (&[], "TRACE"),
        (
            &["mine.jsonl", "--decide-costs", "theirs.jsonl"],
            "theirs.jsonl measured the cost of no action in mine.jsonl: give --decide-costs a second recording",
        ),
        (
            &["mine.jsonl", "--decide-costs", "missing.jsonl"],
            "cannot open trace missing.jsonl",
        ),
    ];
    for (args, needle) in cases {
        let out = simulate(d, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// `--decide-costs`: a second recording of the same action gives gd-cost
/// its seconds, and both outputs say so.
#[test]
fn a_second_recording_gives_gd_cost_its_seconds_and_the_report_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let recording = |cost: f64| {
        format!(
            "{{\"gocache_trace\":1,\"source\":\"prog\"}}\n\
             {{\"t\":1,\"ev\":\"get\",\"a\":\"9f3c0e21d4a8b7c6\",\"hit\":false}}\n\
             {{\"t\":9,\"ev\":\"put\",\"a\":\"9f3c0e21d4a8b7c6\",\"o\":\"51aa0c3e9d2b7f10\",\"size\":4096,\"cost\":{cost}}}\n\
             {{\"t\":20,\"ev\":\"get\",\"a\":\"0b7e99c2a1d3f456\",\"hit\":false}}\n"
        )
    };
    std::fs::write(d.join("first.jsonl"), recording(0.5)).unwrap();
    std::fs::write(d.join("second.jsonl"), recording(0.7)).unwrap();
    let out = run_ok(Command::new(gocache_bin()).current_dir(d).args([
        "simulate",
        "first.jsonl",
        "--decide-costs",
        "second.jsonl",
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    // Of two actions, one was measured in the second: half.
    assert!(
        text.contains("gd-cost decides with a second recording's seconds for 50.0% of actions"),
        "{text}"
    );
    let out = run_ok(Command::new(gocache_bin()).current_dir(d).args([
        "simulate",
        "first.jsonl",
        "--decide-costs",
        "second.jsonl",
        "--json",
    ]));
    let with: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(with["trace"]["decided_with_other"], 1, "{with}");
    let out = run_ok(Command::new(gocache_bin()).current_dir(d).args([
        "simulate",
        "first.jsonl",
        "--json",
    ]));
    let without: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        without["trace"].get("decided_with_other").is_none(),
        "{without}"
    );
    // What is counted is the first recording's seconds either way.
    assert_eq!(with["requested_s"], without["requested_s"]);
}

/// A budget given as a size counts the whole directory, as trim's does:
/// `--budget B --fixed-bytes F` holds the entries to B-F (`for_entries`),
/// which a textbook policy replays exactly as `--budget B-F` with no fixed
/// bytes; a batch policy also scales the whole budget to the headroom, as
/// trim does, so it leaves the entries 90% of B less F, not 90% of B-F:
/// it evicts at least as much. A percentage is of the entries' footprint,
/// whatever the fixed bytes.
#[test]
fn fixed_bytes_come_off_a_size_budget_and_not_a_percentage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    save_synthetic_trace(d);
    let sim = |args: &[&str]| {
        json(&run_ok(
            Command::new(gocache_bin())
                .args([
                    "simulate",
                    "t.jsonl",
                    "--json",
                    "--policy",
                    "lru,gdsf,lru-groups",
                ])
                .args(args)
                .current_dir(d),
        ))
    };
    let (b, f) = (64u64 << 20, 5u64 << 20);
    let with = sim(&[
        "--budget",
        &b.to_string(),
        "--budget",
        "20%",
        "--fixed-bytes",
        &f.to_string(),
    ]);
    let less = sim(&[
        "--budget",
        &(b - f).to_string(),
        "--budget",
        "20%",
        "--fixed-bytes",
        "0",
    ]);
    assert_eq!(with["fixed_bytes"], f);
    let (w, l) = (&with["budgets"], &less["budgets"]);
    assert_eq!(w[0]["budget"], b, "{w}");
    assert_eq!(w[0]["for_entries"], b - f, "{w}");
    let row = |rows: &serde_json::Value, p: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["policy"] == p)
            .unwrap()
            .clone()
    };
    assert_eq!(
        row(&w[0]["rows"], "lru-groups"),
        row(&l[0]["rows"], "lru-groups"),
        "the same replay"
    );
    let mut deeper = 0;
    for p in ["lru", "gdsf"] {
        let (with, less) = (row(&w[0]["rows"], p), row(&l[0]["rows"], p));
        let n = |r: &serde_json::Value, k: &str| r[k].as_u64().unwrap();
        assert!(
            n(&with, "evictions") >= n(&less, "evictions"),
            "{p}: {with} {less}"
        );
        assert!(n(&with, "hits") <= n(&less, "hits"), "{p}: {with} {less}");
        deeper += usize::from(n(&with, "evictions") > n(&less, "evictions"));
    }
    assert!(deeper > 0, "the headroom of the whole is deeper: {w} {l}");
    assert_eq!(w[1]["budget"], w[1]["for_entries"], "{w}");
    assert_eq!(w[1]["rows"], l[1]["rows"], "a percentage is the same");
}

/// `--fixed-bytes FIRST..LAST`: the directory's other bytes grow through
/// the trace, as gocache's index does while it records it, so the entries
/// may take less and less of a size budget. A textbook policy (checked
/// after every request) keeps no more than with FIRST throughout and no
/// less than with LAST throughout, and strictly between where the two
/// differ; the report names both ends.
#[test]
fn fixed_bytes_that_grow_shrink_the_entries_room_as_the_trace_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    save_synthetic_trace(d);
    let b = 64u64 << 20;
    let hits = |fixed: &str| {
        let out = json(&run_ok(
            Command::new(gocache_bin())
                .args(["simulate", "t.jsonl", "--json", "--policy", "lru-groups"])
                .args(["--budget", &b.to_string(), "--fixed-bytes", fixed])
                .current_dir(d),
        ));
        let row = &out["budgets"][0]["rows"][0];
        assert_eq!(row["policy"], "lru-groups", "{out}");
        (row["hits"].as_u64().unwrap(), out)
    };
    let (first, _) = hits("1MiB");
    let (last, _) = hits("24MiB");
    let (grown, report) = hits("1MiB..24MiB");
    assert!(last < first, "23 MiB less room costs hits: {last} {first}");
    assert!(last < grown && grown < first, "{last} < {grown} < {first}");
    assert_eq!(report["fixed_bytes"], 1u64 << 20, "{report}");
    assert_eq!(report["fixed_bytes_last"], 24u64 << 20, "{report}");
    assert_eq!(
        report["budgets"][0]["for_entries"],
        b - (1 << 20),
        "{report}"
    );
}

/// Two synthetic days saved as `t.jsonl` in `d`.
fn save_synthetic_trace(d: &std::path::Path) {
    run_ok(
        Command::new(gocache_bin())
            .args(["simulate", "--synthetic", "--days", "2"])
            .args(["--save-trace", "t.jsonl", "--budget", "10%"])
            .current_dir(d),
    );
}
