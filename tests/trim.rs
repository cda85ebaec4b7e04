//! `gocache trim` on real caches, with real go commands running alongside.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// Every path under the cache with its size and mtime, for "nothing
/// changed" checks.
fn snapshot(cache: &Path) -> BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, (u64, std::time::SystemTime)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            if p.file_name().unwrap() == "gocache" {
                continue;
            }
            out.insert(p.clone(), (md.len(), md.modified().unwrap()));
            if md.is_dir() {
                walk(&p, out);
            }
        }
    }
    let mut m = BTreeMap::new();
    walk(cache, &mut m);
    m
}

fn index_dump(index: &Path) -> Vec<(String, i64, i64, i64)> {
    let conn = rusqlite::Connection::open(index).unwrap();
    let mut stmt = conn
        .prepare("SELECT name, allocated, last_use, hits FROM entries ORDER BY subdir, name")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn entry_allocated(cache: &Path) -> u64 {
    let s = json(&run_ok(
        Command::new(gocache_bin())
            .arg("--cache-dir")
            .arg(cache)
            .args(["stats", "--json"]),
    ));
    s["total"]["allocated_bytes"].as_u64().unwrap()
}

#[test]
fn trim_to_a_budget_ends_under_it_by_du_and_go_still_builds() {
    let sb = Sandbox::with_template();
    backdate(&sb.cache(), Duration::from_secs(3 * 3600));
    run_ok(sb.gocache(["scan"]));
    let before = du(&sb.cache());
    let budget = before / 3;
    let out = run_ok(
        sb.gocache(["trim", "--json", "--budget"])
            .arg(budget.to_string()),
    );
    let t = json(&out);
    assert_eq!(t["dry_run"], false);
    assert_eq!(t["limits_met"], true, "{t:#}");
    assert!(t["executed"]["removed"].as_u64().unwrap() > 100);
    let after = du(&sb.cache());
    assert!(
        after <= budget,
        "du {after} > budget {budget} (before {before})"
    );

    // Go still builds, rebuilding what was evicted, and runs programs.
    let dir = sb.write_hello("again", "still works");
    let out = run_ok(sb.go(["run", "."]).current_dir(&dir));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "still works\n");
    run_ok(sb.go(["build", "fmt", "net/url", "encoding/json"]));

    // Go's builds put the cache over budget again; with those just used
    // (inside the grace period) nothing more is removed, and the plan says
    // which limit stays unmet. After a backdate, a second trim meets it and
    // a third removes nothing.
    backdate(&sb.cache(), Duration::from_secs(3 * 3600));
    run_ok(sb.gocache(["trim", "--budget"]).arg(budget.to_string()));
    let t = json(&run_ok(
        sb.gocache(["trim", "--json", "--budget"])
            .arg(budget.to_string()),
    ));
    assert_eq!(t["executed"]["removed"].as_u64().unwrap(), 0, "{t:#}");
    assert!(du(&sb.cache()) <= budget);
}

#[test]
fn gocache_trim_from_cron_is_gocache_trim() {
    let sb = Sandbox::with_template();
    backdate(&sb.cache(), Duration::from_secs(3 * 3600));
    // The same plan, the same text, the same exit codes.
    let args = ["--dry-run", "--json", "--budget", "10MiB"];
    let cron = json(&run_ok(sb.gocache_trim(args)));
    let by_hand = json(&run_ok(sb.gocache(["trim"]).args(args)));
    let victims = &cron["plan"]["victims"];
    assert_eq!(victims, &by_hand["plan"]["victims"]);
    assert!(!victims.as_array().unwrap().is_empty());
    for bad in [
        &["--budget", "10XB"][..],
        &["--cache-dir", "relative/nowhere"],
    ] {
        let cron = sb.gocache_trim(bad).output().unwrap();
        let by_hand = sb.gocache(["trim"]).args(bad).output().unwrap();
        assert_eq!(cron.status.code(), Some(2), "{bad:?}");
        assert_eq!(cron.status.code(), by_hand.status.code(), "{bad:?}");
        assert_eq!(cron.stderr, by_hand.stderr, "{bad:?}");
    }
    // The cron line of the README: quiet, within the budget afterwards.
    let out = run_ok(sb.gocache_trim(["-q", "--budget", "10MiB"]));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    assert!(entry_allocated(&sb.cache()) <= 10 << 20);
    let lock_held = std::fs::File::open(sb.cache().join("gocache/trim.lock")).unwrap();
    fs4::FileExt::lock(&lock_held).unwrap();
    let out = run_ok(sb.gocache_trim(std::iter::empty::<&str>()));
    assert!(String::from_utf8_lossy(&out.stdout).contains("another trim is running"));
}

/// `gocache-trim` is a command of its own to the user: its version, its
/// usage line and its bash completion name it, as `gocache` does itself.
#[test]
fn gocache_trim_names_itself_in_its_version_help_and_completion() {
    let sb = Sandbox::new();
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
    let version = text(&run_ok(sb.gocache(["--version"])));
    let number = version.trim().strip_prefix("gocache ").unwrap().to_string();
    // A link named gocache-trim is gocache-trim as well.
    let link = sb.root().join("gocache-trim");
    std::os::unix::fs::symlink(gocache_bin(), &link).unwrap();
    for bin in [gocache_trim_bin(), link] {
        let out = run_ok(sb.command(bin.clone(), ["--version"]));
        assert_eq!(text(&out), format!("gocache-trim {number}\n"), "{bin:?}");
        for help in ["--help", "-h"] {
            let out = run_ok(sb.command(bin.clone(), [help]));
            let usage = text(&out);
            assert!(
                usage.contains("Usage: gocache-trim [OPTIONS]"),
                "{bin:?} {help}: {usage}"
            );
            assert!(!usage.contains("gocache trim"), "{bin:?} {help}: {usage}");
            assert!(
                usage.starts_with("Evict entries to keep the cache within its limits"),
                "{bin:?} {help}: {usage}"
            );
            for flag in [
                "--budget",
                "--dry-run",
                "--cache-dir",
                "--quiet",
                "--version",
            ] {
                assert!(usage.contains(flag), "{bin:?} {help}: no {flag}: {usage}");
            }
        }
    }
    // The bash script registers a completion for gocache-trim, which
    // completes its flags.
    let script = sb.root().join("gocache.bash");
    std::fs::write(&script, text(&run_ok(sb.gocache(["completions", "bash"])))).unwrap();
    let cmd = format!(
        "source '{}'\nspec=$(complete -p gocache-trim) || exit 1\necho \"$spec\"\n\
         f=${{spec#*-F }}; f=${{f%% *}}\nCOMP_WORDS=(gocache-trim --bu)\nCOMP_CWORD=1\n\
         \"$f\" gocache-trim --bu gocache-trim\necho \"${{COMPREPLY[*]}}\"",
        script.display()
    );
    let out = run_ok(std::process::Command::new("bash").args(["-c", &cmd]));
    let got = text(&out);
    assert!(got.contains("gocache-trim\n"), "{got}");
    assert!(got.lines().last().unwrap().contains("--budget"), "{got}");
}

#[test]
fn dry_run_twice_changes_nothing_on_disk_or_in_the_index() {
    let sb = Sandbox::with_template();
    backdate(&sb.cache(), Duration::from_secs(8 * 86400));
    run_ok(sb.gocache(["scan"]));
    let disk = snapshot(&sb.cache());
    let index = index_dump(&sb.index());
    let mut plans = Vec::new();
    for _ in 0..2 {
        let t = json(&run_ok(sb.gocache([
            "trim",
            "--dry-run",
            "--json",
            "--budget",
            "10MiB",
        ])));
        assert_eq!(t["dry_run"], true);
        assert!(t["executed"].is_null());
        plans.push(t["plan"]["victims"].clone());
        assert_eq!(snapshot(&sb.cache()), disk);
        assert_eq!(index_dump(&sb.index()), index);
    }
    // Everything is older than the 5-day build age limit: all of it goes,
    // by age, and the plan is the same both times.
    let victims = plans[0].as_array().unwrap();
    assert_eq!(victims.len(), index.len());
    assert!(
        victims
            .iter()
            .all(|v| v["rule"] == "age" || v["rule"] == "garbage")
    );
    assert_eq!(plans[0], plans[1]);
    // The text form of a dry run says what would go and why.
    let out = run_ok(sb.gocache(["trim", "--dry-run", "--budget", "10MiB"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("would remove"), "{text}");
    assert_eq!(snapshot(&sb.cache()), disk);
}

#[test]
fn a_second_trim_steps_aside_while_one_holds_the_lock() {
    let sb = Sandbox::with_template();
    let lock_path = sb.cache().join("gocache/trim.lock");
    std::fs::create_dir_all(lock_path.parent().unwrap()).unwrap();
    let lock = std::fs::File::create(&lock_path).unwrap();
    fs4::FileExt::lock(&lock).unwrap();
    let out = run_ok(sb.gocache(["trim", "--budget", "1MiB"]));
    let msg =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("another trim"), "{msg}");
    // And it removed nothing.
    assert_eq!(
        json(&run_ok(sb.gocache(["stats", "--json"])))["kinds"]["exe"]["entries"],
        2
    );
    fs4::FileExt::unlock(&lock).unwrap();
}

#[test]
fn trims_far_below_the_working_set_never_break_running_go_commands() {
    let sb = Sandbox::with_template();
    // Old enough that the trims may take anything Go has not touched in
    // this test; what Go touches gets a fresh mtime and is protected.
    backdate(&sb.cache(), Duration::from_secs(3 * 3600));
    let lib = sb.root().join("work/mathx");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(lib.join("go.mod"), "module example.com/mathx\n\ngo 1.24\n").unwrap();
    std::fs::write(
        lib.join("mathx.go"),
        "package mathx\n\nfunc Add(a, b int) int { return a + b }\n",
    )
    .unwrap();
    std::fs::write(
        lib.join("mathx_test.go"),
        "package mathx\n\nimport \"testing\"\n\nfunc TestAdd(t *testing.T) {\n\tif Add(1, 2) != 3 {\n\t\tt.Fatal()\n\t}\n}\n",
    )
    .unwrap();
    let hello = sb.write_hello("hello", "hello, world");

    let stop = std::sync::atomic::AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (builds, trims) = std::thread::scope(|s| {
        let go_loop = s.spawn(|| {
            let mut n = 0;
            for i in 0..12 {
                let (args, dir): (&[&str], &Path) = match i % 3 {
                    0 => (&["build", "fmt", "net/http", "encoding/json"], sb.root()),
                    1 => (&["test", "-count=1", "./..."], &lib),
                    _ => (&["run", "."], &hello),
                };
                let out = sb
                    .go(args)
                    .current_dir(dir)
                    .stdin(Stdio::null())
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "go {args:?} failed while trims ran:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                n += 1;
                // At least six go commands run beside the trims, however
                // slow the machine; more while time allows.
                if n >= 6 && Instant::now() > deadline {
                    break;
                }
            }
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            n
        });
        let trim_loop = s.spawn(|| {
            let (mut n, mut removed) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                // 1 MiB is under what the directories alone take: every
                // trim runs, and says (exit 3) that the budget is not met.
                let out = run_expecting(
                    sb.gocache(["trim", "--json", "--budget", "1MiB", "--grace", "0s"]),
                    3,
                );
                let t = json(&out);
                assert_eq!(t["unmet"][0]["limit"], "budget", "{t:#}");
                removed += t["executed"]["removed"].as_u64().unwrap();
                n += 1;
            }
            (n, removed)
        });
        (go_loop.join().unwrap(), trim_loop.join().unwrap())
    });
    let (trims, removed) = trims;
    assert!(builds >= 6 && trims >= 3, "builds {builds}, trims {trims}");
    // The trims really did evict while Go ran (what Go touched was kept).
    assert!(removed > 500, "trims removed only {removed} entries");
}

#[test]
fn a_trim_killed_at_random_moments_leaves_a_cache_go_uses_and_an_index_the_next_scan_repairs() {
    let sb = Sandbox::with_template();
    backdate(&sb.cache(), Duration::from_secs(3 * 3600));
    run_ok(sb.gocache(["scan"]));
    let mut rng = fastrand::Rng::with_seed(31948);
    for _ in 0..6 {
        let mut child = sb
            .gocache(["trim", "-q", "--budget", "1MiB"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.u64(1..60)));
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
    }
    // Go still builds and runs.
    let dir = sb.write_hello("after", "after the kills");
    assert_eq!(
        String::from_utf8_lossy(&run_ok(sb.go(["run", "."]).current_dir(&dir)).stdout),
        "after the kills\n"
    );
    run_ok(sb.go(["build", "std"]));
    // A full scan repairs the index: it matches the disk exactly.
    run_ok(sb.gocache(["scan", "--full"]));
    let s = json(&run_ok(sb.gocache(["stats", "--json", "--no-sync"])));
    let (mut files, mut dirs) = (0u64, 0u64);
    for sub in 0..256 {
        for e in std::fs::read_dir(sb.cache().join(format!("{sub:02x}"))).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            if name.len() == 66 && (name.ends_with("-a") || name.ends_with("-d")) {
                if e.file_type().unwrap().is_dir() {
                    dirs += 1;
                } else {
                    files += 1;
                }
            }
        }
    }
    assert_eq!(s["total"]["entries"].as_u64().unwrap(), files + dirs);
    assert_eq!(s["kinds"]["exe"]["entries"].as_u64().unwrap(), dirs);
}

#[test]
fn links_and_odd_entries_never_lead_outside_the_cache() {
    let sb = Sandbox::with_template();
    let cache = sb.cache();
    let outside = sb.root().join("outside");
    std::fs::create_dir_all(outside.join("dir")).unwrap();
    std::fs::write(outside.join("precious"), "keep me").unwrap();
    std::fs::write(outside.join("dir/inner"), "keep me too").unwrap();
    let hex = |c: char| std::iter::repeat_n(c, 64).collect::<String>();
    // A hardlink to an outside file under a valid output name: removing the
    // entry removes only the link.
    std::fs::hard_link(
        outside.join("precious"),
        cache.join(format!("aa/{}-d", hex('a'))),
    )
    .unwrap();
    // Symlinks under valid names, to an outside file and an outside dir.
    std::os::unix::fs::symlink(
        outside.join("precious"),
        cache.join(format!("bb/{}-d", hex('b'))),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        outside.join("dir"),
        cache.join(format!("cc/{}-a", hex('c'))),
    )
    .unwrap();
    // An executable directory holding a symlink out, one holding two files,
    // and one holding a subdirectory.
    let exe_link = cache.join(format!("dd/{}-d", hex('d')));
    std::fs::create_dir(&exe_link).unwrap();
    std::os::unix::fs::symlink(outside.join("dir"), exe_link.join("tool")).unwrap();
    let two = cache.join(format!("ee/{}-d", hex('e')));
    std::fs::create_dir(&two).unwrap();
    std::fs::write(two.join("a"), "1").unwrap();
    std::fs::write(two.join("b"), "2").unwrap();
    let nested = cache.join(format!("ff/{}-d", hex('f')));
    std::fs::create_dir_all(nested.join("sub")).unwrap();
    std::fs::write(nested.join("sub/x"), "x").unwrap();
    backdate(&cache, Duration::from_secs(30 * 86400));

    // 0B cannot be met (the directories and the odd items stay): exit 3,
    // saying so.
    let t = json(&run_expecting(
        sb.gocache(["trim", "--json", "--budget", "0B"]),
        3,
    ));
    assert!(t["executed"]["removed"].as_u64().unwrap() > 1000, "{t:#}");
    assert_eq!(t["limits_met"], false, "{t:#}");
    assert_eq!(t["unmet"][0]["limit"], "budget", "{t:#}");
    // Outside: untouched.
    assert_eq!(
        std::fs::read_to_string(outside.join("precious")).unwrap(),
        "keep me"
    );
    assert_eq!(
        std::fs::read_to_string(outside.join("dir/inner")).unwrap(),
        "keep me too"
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 2);
    // The hardlinked output was a valid entry, so it went (as a link).
    assert!(!cache.join(format!("aa/{}-d", hex('a'))).exists());
    // The odd ones are still there, and reported.
    for p in [
        cache.join(format!("bb/{}-d", hex('b'))),
        cache.join(format!("cc/{}-a", hex('c'))),
        exe_link.join("tool"),
        two.join("a"),
        nested.join("sub/x"),
    ] {
        assert!(
            std::fs::symlink_metadata(&p).is_ok(),
            "{} was removed",
            p.display()
        );
    }
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    assert!(
        s["other"]["odd"]["entries"].as_u64().unwrap() >= 5,
        "{:#}",
        s["other"]
    );
}

#[test]
fn a_corrupt_or_read_only_index_still_gets_the_limits_met() {
    for case in ["corrupt", "too-new"] {
        let sb = Sandbox::with_template();
        backdate(&sb.cache(), Duration::from_secs(3 * 3600));
        run_ok(sb.gocache(["scan"]));
        match case {
            "corrupt" => std::fs::write(sb.index(), vec![0xa5u8; 1 << 16]).unwrap(),
            _ => {
                let conn = rusqlite::Connection::open(sb.index()).unwrap();
                conn.execute_batch("PRAGMA user_version = 4242").unwrap();
            }
        }
        let budget = du(&sb.cache()) / 2;
        let out = run_ok(
            sb.gocache(["trim", "--json", "--budget"])
                .arg(budget.to_string()),
        );
        let t = json(&out);
        assert!(t["fallback"].is_string(), "{case}: {t:#}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("warning"),
            "{case}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(t["limits_met"], true, "{case}: {t:#}");
        assert!(entry_allocated(&sb.cache()) <= budget, "{case}");
        run_ok(sb.go(["build", "fmt"]));
    }
}

#[test]
fn the_eviction_policy_is_stored_with_the_limits_and_gdsf_trims_big_entries_first() {
    let sb = Sandbox::with_template();
    backdate(&sb.cache(), Duration::from_secs(3 * 3600));
    run_ok(sb.gocache(["scan"]));
    let budget = (entry_allocated(&sb.cache()) / 2).to_string();
    let plan = |policy: Option<&str>| {
        let mut c = sb.gocache(["trim", "-n", "--json", "--budget", &budget]);
        if let Some(p) = policy {
            c.args(["--policy", p]);
        }
        json(&run_ok(c))["plan"].clone()
    };
    // LRU is the default; under gdsf every entry of the template has no
    // hits and the same clock, so the biggest go first: the same bytes in
    // fewer entries.
    let lru = plan(None);
    assert_eq!(lru["limits"]["policy"], "lru");
    assert!(lru.get("clock").is_none(), "{lru:#}");
    let gdsf = plan(Some("gdsf"));
    assert_eq!(gdsf["limits"]["policy"], "gdsf");
    assert!(gdsf["clock"].as_f64().unwrap() > 0.0);
    let count = |p: &serde_json::Value| p["victims"].as_array().unwrap().len();
    assert!(
        count(&gdsf) < count(&lru),
        "{} {}",
        count(&gdsf),
        count(&lru)
    );

    // Stored with the limits, it is what a plain trim (and the hook, prog
    // and ci end) uses; the environment is over it, as for a limit.
    run_ok(sb.gocache(["limits", "--policy", "gdsf"]));
    let l = json(&run_ok(sb.gocache(["limits", "--json"])));
    assert_eq!(l["stored"]["policy"], "gdsf");
    assert_eq!(
        (&l["effective"]["policy"], &l["sources"]["policy"]),
        (&"gdsf".into(), &"stored".into())
    );
    assert_eq!(plan(None)["limits"]["policy"], "gdsf");
    let env = json(&run_ok(
        sb.gocache(["trim", "-n", "--json", "--budget", &budget])
            .env("GOCACHE_POLICY", "lru"),
    ));
    assert_eq!(env["plan"]["limits"]["policy"], "lru");
    let bad = run_expecting(sb.gocache(["limits", "--policy", "fifo"]), 2);
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("use lru, gdsf or gd-cost"),
        "{bad:?}"
    );

    // A real trim meets the budget and records the clock it reached in the
    // index, for the next trim's priorities.
    let t = json(&run_ok(sb.gocache(["trim", "--json", "--budget", &budget])));
    assert_eq!(t["limits_met"], true, "{t:#}");
    assert!(du(&sb.cache()) <= budget.parse::<u64>().unwrap());
    let conn = rusqlite::Connection::open(sb.index()).unwrap();
    let clock: String = conn
        .query_row("SELECT value FROM meta WHERE key = 'gdsf_clock'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let clock: Vec<(i64, f64)> = serde_json::from_str(&clock).unwrap();
    assert_eq!(clock.len(), 1);
    assert!(clock[0].1 > 0.0, "{clock:?}");
    // Go still builds.
    run_ok(sb.go(["build", "fmt", "net/url"]));
}

/// Cron mails what a job prints, and `-q` keeps the
/// mail to what needs a look: a trim that leaves a limit unmet (exit 3)
/// says which in one line on stderr, even with `-q`; one that meets them
/// prints nothing, and neither does a dry run.
#[test]
fn a_quiet_trim_that_leaves_a_limit_unmet_says_which_in_one_line() {
    let sb = Sandbox::with_template();
    backdate(&sb.cache(), Duration::from_secs(3 * 3600));
    // 0B: the directories alone are over it.
    for args in [&["-q", "--budget", "0B"][..], &["--budget", "0B", "-q"]] {
        let out = run_expecting(sb.gocache_trim(args), 3);
        assert!(out.stdout.is_empty(), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("gocache: budget not met: still ") && err.contains(" over: "),
            "{err}"
        );
    }
    let out = run_ok(sb.gocache(["trim", "-q", "-n", "--budget", "0B"]));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    let out = run_ok(sb.gocache(["trim", "-q", "--budget", "10GiB"]));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
}

/// Every entry of the cache (`xx/<hex>-a`, `xx/<hex>-d`) to its allocated
/// bytes (an executable: its directory and its file), by the test's own
/// walk.
fn entry_sizes(cache: &Path) -> BTreeMap<String, u64> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    for sub in 0..256 {
        let sub = format!("{sub:02x}");
        let Ok(rd) = std::fs::read_dir(cache.join(&sub)) else {
            continue;
        };
        for e in rd {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let entry = name.len() == 66
                && name.starts_with(&sub)
                && (name.ends_with("-a") || name.ends_with("-d"))
                && name[..64].bytes().all(|b| b.is_ascii_hexdigit());
            if !entry {
                continue;
            }
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            let mut allocated = md.blocks() * 512;
            if md.is_dir() {
                for inner in std::fs::read_dir(e.path()).unwrap() {
                    allocated += inner.unwrap().metadata().unwrap().blocks() * 512;
                }
            }
            out.insert(format!("{sub}/{name}"), allocated);
        }
    }
    out
}

fn human(bytes: u64) -> String {
    humansize::format_size(bytes, humansize::BINARY)
}

/// `trim --budget 0B` on a cache a build has just used.
/// Everything outside the grace period goes in a first round, and a second
/// finds nothing more: the report still says what was removed and by which
/// rule, names what is left with its bytes (mostly entries inside the
/// grace period, then the directory's fixed bytes), and every number takes
/// one form and agrees with the test's walk, `du` and `stats`.
#[test]
fn a_budget_the_grace_period_keeps_out_of_reach_says_what_was_removed_and_why_not_more() {
    let sb = Sandbox::with_template();
    backdate(&sb.cache(), Duration::from_secs(10 * 86_400));
    let hello = sb.write_hello("recent", "used just now");
    run_ok(sb.go(["build", "-o", "/dev/null", "."]).current_dir(&hello));
    // The same cache twice: one trim for JSON, one for text.
    let twin = sb.root().join("twin");
    copy_tree(&sb.cache(), &twin);
    let before = entry_sizes(&sb.cache());
    let exes = before
        .keys()
        .filter(|n| std::fs::symlink_metadata(twin.join(n)).is_ok_and(|m| m.is_dir()))
        .count() as u64;

    let t = json(&run_expecting(
        sb.gocache(["trim", "--json", "--budget", "0B"]),
        3,
    ));
    let after = entry_sizes(&sb.cache());
    let removed: Vec<&String> = before.keys().filter(|n| !after.contains_key(*n)).collect();
    let removed_bytes: u64 = removed.iter().map(|n| before[*n]).sum();
    let kept_bytes: u64 = after.values().sum();
    assert!(removed.len() > 1000 && !after.is_empty(), "{t:#}");
    assert_eq!(t["executed"]["removed"], removed.len() as u64);
    let by_rule = t["plan"]["by_rule_bytes"].as_object().unwrap();
    let (n, b) = by_rule.values().fold((0, 0), |(n, b), v| {
        (
            n + v["entries"].as_u64().unwrap(),
            b + v["allocated_bytes"].as_u64().unwrap(),
        )
    });
    assert_eq!(
        (n, b),
        (removed.len() as u64, removed_bytes),
        "{by_rule:#?}"
    );
    assert_eq!(
        t["plan"]["victims"].as_array().unwrap().len(),
        removed.len()
    );
    let on_disk = du(&sb.cache());
    let fixed = on_disk - kept_bytes;
    assert_eq!(t["unmet"][0]["limit"], "budget", "{t:#}");
    assert_eq!(t["unmet"][0]["over_by"], on_disk);
    let reason = t["unmet"][0]["reason"].as_str().unwrap();
    assert!(kept_bytes > fixed, "mostly entries: {kept_bytes} {fixed}");
    assert_eq!(
        reason,
        format!(
            "what is left is {} of entries used within the grace period and {} of fixed \
             bytes beside the entries (directories, Go's files, the index), more than the \
             budget on their own",
            human(kept_bytes),
            human(fixed)
        )
    );

    // Text: grouped counts, the entries and the whole directory named as
    // such, and the sizes stats and du give.
    let out = run_expecting(
        sb.gocache(["trim", "--budget", "0B"]).env("GOCACHE", &twin),
        3,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let twin_after = entry_sizes(&twin);
    assert_eq!(twin_after.len(), after.len(), "the same trim");
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with(&format!(
            "removed {} entries, {}, in ",
            grouped(removed.len() as u64),
            human(removed_bytes),
        )),
        "{text}"
    );
    let total = text.lines().find(|l| l.starts_with("  total ")).unwrap();
    let words: Vec<&str> = total.split_whitespace().collect();
    assert_eq!(
        words.join(" "),
        format!(
            "total {} -> {} entries {} -> {}",
            grouped(before.len() as u64),
            grouped(twin_after.len() as u64),
            human(before.values().sum()),
            human(twin_after.values().sum()),
        ),
        "{text}"
    );
    let build = text.lines().find(|l| l.starts_with("  build ")).unwrap();
    assert!(
        build.contains(&format!(" {} -> ", grouped(before.len() as u64 - exes))),
        "{text}"
    );
    for (rule, b) in by_rule {
        let n = b["entries"].as_u64().unwrap();
        if n > 0 {
            let want = format!("  {rule:<11} {:>8} entries ", grouped(n));
            assert!(
                text.lines().any(|l| l.starts_with(&want)),
                "{want:?}\n{text}"
            );
        }
    }
    let twin_du = du(&twin);
    assert!(
        text.contains(&format!(
            "\n  directory   {} on disk after (du; what the budget bounds)\n",
            human(twin_du)
        )),
        "{text}"
    );
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains(&format!(
            "what is left is {} of entries used within the grace period",
            human(kept_bytes)
        )),
        "{text}"
    );
    let s = json(&run_ok(
        sb.gocache(["stats", "--json"]).env("GOCACHE", &twin),
    ));
    assert_eq!(s["against_limits"]["cache_bytes"], twin_du);
    let stats =
        String::from_utf8_lossy(&run_ok(sb.gocache(["stats"]).env("GOCACHE", &twin)).stdout)
            .into_owned();
    let size = stats.lines().find(|l| l.starts_with("Size ")).unwrap();
    assert!(size.contains(&format!(" {} ", human(twin_du))), "{stats}");
}
