//! `gocache hook`: the post-insert hook after real go commands.

use std::time::Duration;

use crate::support::*;

#[test]
fn the_hook_after_a_build_that_changed_nothing_reads_no_subdirectory() {
    let sb = Sandbox::with_template();
    let dir = sb.write_hello("hello", "hello, world");
    run_ok(sb.go(["build", "-o", "/dev/null", "."]).current_dir(&dir));
    // The subdirectories that build changed have mtimes within the scan's
    // racy window; move them a minute back instead of sleeping.
    let past = std::time::SystemTime::now() - Duration::from_secs(60);
    for sub in 0..256 {
        let d = std::fs::File::open(sb.cache().join(format!("{sub:02x}"))).unwrap();
        d.set_modified(past).unwrap();
    }
    run_ok(sb.gocache(["scan"]));
    // The same build again adds nothing to the cache (write_hello dates the
    // sources back, so the first build cached Go's module index of them
    // too; with fresh sources a build more than 2 s later adds it: the
    // `rescanned [53, 215]` seen under load).
    run_ok(sb.go(["build", "-o", "/dev/null", "."]).current_dir(&dir));
    let h = json(&run_ok(
        sb.gocache(["hook", "--json", "--budget", "100GiB"]),
    ));
    assert_eq!(h["action"], "under_limits");
    assert_eq!(h["rescanned"], serde_json::json!([]), "{h:#}");
    // A build that adds entries: the hook rereads only what changed.
    let dir = sb.write_hello("fresh", "something new");
    run_ok(sb.go(["build", "-o", "/dev/null", "."]).current_dir(&dir));
    let h = json(&run_ok(
        sb.gocache(["hook", "--json", "--budget", "100GiB"]),
    ));
    let n = h["rescanned"].as_array().unwrap().len();
    assert!((1..32).contains(&n), "{h:#}");
}

#[test]
fn the_exe_quota_evicts_old_executables_never_the_one_just_run() {
    let sb = Sandbox::with_template();
    backdate(&sb.cache(), Duration::from_secs(3 * 3600));
    run_ok(sb.gocache(["scan"]));
    let dir = sb.write_hello("newtool", "new tool");
    run_ok(sb.go(["run", "."]).current_dir(&dir));
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    assert_eq!(s["kinds"]["exe"]["entries"], 3);
    let newest = s["largest_exes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["program"] == "newtool")
        .unwrap()
        .clone();
    // A quota that fits about one executable.
    let quota = newest["allocated_bytes"].as_u64().unwrap() * 3 / 2;
    let h = json(&run_ok(
        sb.gocache(["hook", "--json", "--exe-quota"])
            .arg(quota.to_string()),
    ));
    assert_eq!(h["action"], "trimmed", "{h:#}");
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    let programs: Vec<&str> = s["largest_exes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["program"].as_str().unwrap())
        .collect();
    assert_eq!(programs, vec!["newtool"]);
    // The evicted one rebuilds and runs.
    let hello = sb.write_hello("hello", "hello, world");
    let out = run_ok(sb.go(["run", "."]).current_dir(&hello));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello, world\n");
}

#[test]
fn many_go_commands_finishing_together_keep_the_index_consistent_and_the_budget() {
    let sb = Sandbox::with_template();
    backdate(&sb.cache(), Duration::from_secs(3 * 3600));
    run_ok(sb.gocache(["scan"]));
    let before = json(&run_ok(sb.gocache(["stats", "--json"])))["total"]["allocated_bytes"]
        .as_u64()
        .unwrap();
    let budget = before / 2;
    let dirs: Vec<_> = (0..8)
        .map(|i| sb.write_hello(&format!("p{i}"), &format!("program {i}")))
        .collect();
    std::thread::scope(|s| {
        for dir in &dirs {
            let sb = &sb;
            s.spawn(move || {
                run_ok(sb.go(["build", "-o", "/dev/null", "."]).current_dir(dir));
                run_ok(sb.gocache(["hook", "--budget"]).arg(budget.to_string()));
            });
        }
    });
    // One more hook after all of them (what the last wrapper does).
    run_ok(sb.gocache(["hook", "--budget"]).arg(budget.to_string()));
    let s = json(&run_ok(sb.gocache(["stats", "--json", "--no-sync"])));
    assert!(
        s["total"]["allocated_bytes"].as_u64().unwrap() <= budget,
        "{:#}",
        s["total"]
    );
    // The index matches the disk: a full rescan finds nothing to change.
    let scan = json(&run_ok(sb.gocache(["scan", "--full", "--json"])));
    assert_eq!(scan["added"], 0, "{scan:#}");
    assert_eq!(scan["removed"], 0, "{scan:#}");
    // And Go still builds everything.
    for dir in &dirs {
        run_ok(sb.go(["run", "."]).current_dir(dir));
    }
}
