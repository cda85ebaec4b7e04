//! Faults degrade, never fail: a damaged, held or racing index,
//! removals that fail, a full disk, what gocache leaves in the directory,
//! and a custom index name, each on a real cache and, where it takes part,
//! with the real go command.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// Entries on disk, counted by a walk independent of gocache: names of
/// Go's pattern in the 256 subdirectories.
fn entries_on_disk(cache: &Path) -> u64 {
    let mut n = 0;
    for sub in 0..256 {
        let Ok(rd) = std::fs::read_dir(cache.join(format!("{sub:02x}"))) else {
            continue;
        };
        for e in rd {
            let name = e.unwrap().file_name().into_string().unwrap();
            let hex = name.len() == 66
                && name[..64]
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if hex && (name.ends_with("-a") || name.ends_with("-d")) {
                n += 1;
            }
        }
    }
    n
}

/// Zeroes one 4 KiB page in the middle of the index, as the issue did
/// (`dd … bs=4096 seek=60 count=1`), and checks SQLite now finds it
/// damaged. The page is one of the `entries` table's, from the middle: a
/// fixed page number may be a free page, whose zeroing nothing notices,
/// as the schema grows.
fn damage(index: &Path) {
    let pages: Vec<i64> = {
        // Read-only: closing it must not checkpoint or change the file.
        let ro = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        let conn = rusqlite::Connection::open_with_flags(index, ro).unwrap();
        let mut q = conn
            .prepare("SELECT pageno FROM dbstat WHERE name = 'entries' ORDER BY pageno")
            .unwrap();
        q.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    };
    assert!(
        pages.len() > 10,
        "the index is too small to damage: {pages:?}"
    );
    // dd counts pages from 0, SQLite from 1.
    let seek = pages[pages.len() / 2] - 1;
    let status = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", index.display()))
        .args([
            "bs=4096",
            &format!("seek={seek}"),
            "count=1",
            "conv=notrunc",
        ])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert_ne!(integrity(index), "ok", "the damage is real");
}

/// `PRAGMA integrity_check`'s first line ("ok" for a whole index).
fn integrity(index: &Path) -> String {
    let conn = rusqlite::Connection::open(index).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap_or_else(|e| e.to_string())
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Files in `dir` whose names start with `prefix`, sorted.
fn names_starting(dir: &Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(prefix))
        .collect();
    v.sort();
    v
}

/// A sandbox with the template cache, as if unused for three hours (so
/// budgets can be met), and a fresh index written by `gocache scan`.
fn scanned_sandbox() -> Sandbox {
    let sb = Sandbox::with_template();
    backdate(&sb.cache(), Duration::from_secs(3 * 3600));
    run_ok(sb.gocache(["scan"]));
    sb
}

/// Damage found past the first page (mid-scan, not at
/// open) is repaired by every command, each of which still does its job.
#[test]
fn damage_past_the_first_page_is_repaired_by_every_command_which_still_does_its_job() {
    for cmd in ["stats", "scan", "hook", "trim"] {
        let sb = scanned_sandbox();
        let on_disk = entries_on_disk(&sb.cache());
        let budget = (du(&sb.cache()) / 2).to_string();
        damage(&sb.index());
        let args: Vec<&str> = match cmd {
            "stats" => vec!["stats", "--json"],
            "scan" => vec!["scan", "--full", "--json"],
            "hook" => vec!["hook", "--json", "--budget", &budget],
            _ => vec!["trim", "--json", "--budget", &budget],
        };
        let out = run_ok(sb.gocache(&args));
        let err = stderr_of(&out);
        assert!(
            err.contains("index was damaged") && err.contains("malformed"),
            "{cmd}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{cmd}: one warning: {err}");
        let v = json(&out);
        match cmd {
            "stats" => {
                assert_eq!(v["index_mode"], "rebuilt", "{v:#}");
                assert_eq!(v["total"]["entries"], on_disk, "{v:#}");
            }
            "scan" => assert_eq!(v["entries"], on_disk, "{v:#}"),
            "hook" => {
                assert_eq!(v["action"], "trimmed", "{v:#}");
                assert!(du(&sb.cache()) <= budget.parse().unwrap());
            }
            _ => {
                assert_eq!(v["limits_met"], true, "{v:#}");
                assert!(v["fallback"].as_str().unwrap().contains("damaged"));
                assert!(du(&sb.cache()) <= budget.parse().unwrap());
            }
        }
        // Whole again, the damaged copy kept aside with its own WAL.
        assert_eq!(integrity(&sb.index()), "ok", "{cmd}");
        let gocache_dir = sb.cache().join("gocache");
        let aside = names_starting(&gocache_dir, "index.sqlite.corrupt-");
        assert_eq!(aside.len(), 2, "{cmd}: {aside:?}");
        assert!(aside[1].ends_with("-wal"), "{aside:?}");
        // The next command finds nothing to say, and the index right.
        let out = run_ok(sb.gocache(["stats", "--json"]));
        assert_eq!(stderr_of(&out), "", "{cmd}");
        let v = json(&out);
        assert_eq!(v["index_mode"], "read-write");
        assert_eq!(v["total"]["entries"], entries_on_disk(&sb.cache()), "{cmd}");
        run_ok(sb.go(["build", "fmt"]));
    }
}

/// With another process holding `BEGIN EXCLUSIVE` on
/// the index (WAL mode), stats, trim and the hook wait the documented 2 s,
/// then work from a walk; a go command through the wrapper is not held up
/// longer than that.
#[test]
fn a_held_index_costs_the_documented_wait_then_stats_trim_and_the_hook_work_from_a_walk() {
    let sb = scanned_sandbox();
    let on_disk = entries_on_disk(&sb.cache());
    let budget = du(&sb.cache()) / 2;
    let holder = rusqlite::Connection::open(sb.index()).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let b = budget.to_string();
    for args in [
        vec!["stats", "--json"],
        vec!["hook", "--json", "--budget", &b],
        vec!["trim", "--json", "--budget", &b],
    ] {
        // Something new in a subdirectory, so that every sync must write.
        std::fs::write(sb.cache().join(format!("00/stray-{}", args[0])), "x").unwrap();
        let started = Instant::now();
        let out = run_ok(sb.gocache(&args));
        let took = started.elapsed();
        eprintln!("held index: gocache {args:?} took {took:.2?}");
        assert!(
            took >= Duration::from_millis(1900) && took < Duration::from_secs(20),
            "{args:?} took {took:?}"
        );
        let err = stderr_of(&out);
        assert!(
            err.contains("another process held the index for over 2.0s"),
            "{args:?}: {err}"
        );
        let v = json(&out);
        match args[0] {
            "stats" => {
                assert_eq!(v["index_mode"], "in-memory");
                assert_eq!(v["total"]["entries"], on_disk);
            }
            "hook" => assert_eq!(v["action"], "trimmed", "{v:#}"),
            _ => assert_eq!(v["limits_met"], true, "{v:#}"),
        }
        assert!(du(&sb.cache()) <= budget || args[0] == "stats");
    }
    // A go command through the wrapper: the hook after it gives up on the
    // index after the wait, and go's own work and status are untouched.
    let dir = sb.write_hello("held", "held but fine");
    run_ok(sb.go(["run", "."]).current_dir(&dir));
    let started = Instant::now();
    run_ok(sb.go(["run", "."]).current_dir(&dir));
    let plain = started.elapsed();
    let started = Instant::now();
    let out = run_ok(sb.gocache(["go", "run", "."]).current_dir(&dir));
    let wrapped = started.elapsed();
    eprintln!("held index: go run took {plain:.2?}, gocache go run {wrapped:.2?}");
    assert!(wrapped < plain + Duration::from_secs(15), "{wrapped:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "held but fine\n");
    assert!(
        stderr_of(&out).contains("held the index"),
        "{}",
        stderr_of(&out)
    );
    // Released: the file was left alone, and the next sync catches up.
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    let v = json(&run_ok(sb.gocache(["stats", "--json"])));
    assert_eq!(v["index_mode"], "read-write");
    assert_eq!(v["total"]["entries"], entries_on_disk(&sb.cache()));
}

/// Hooks, scans, stats and a GOCACHEPROG go command
/// creating the index together all succeed; none prints SQL.
#[test]
fn processes_creating_the_index_together_all_succeed_and_never_print_sql() {
    let sb = Sandbox::with_template();
    let mut warnings = 0;
    for round in 0..12 {
        match std::fs::remove_dir_all(sb.cache().join("gocache")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("{e}"),
            _ => {}
        }
        let mut children: Vec<(String, std::process::Child)> = Vec::new();
        for i in 0..6 {
            let args: &[&str] = match i % 3 {
                0 => &["hook"],
                1 => &["scan", "-q"],
                _ => &["stats", "--json"],
            };
            let child = sb
                .gocache(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            children.push((format!("gocache {args:?}"), child));
        }
        if round % 4 == 0 {
            let mut go = sb.go(["build", "fmt"]);
            go.env("GOCACHEPROG", format!("{} prog", gocache_bin().display()));
            let child = go
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            children.push(("GOCACHEPROG go build".into(), child));
        }
        for (what, child) in children {
            let out = child.wait_with_output().unwrap();
            let err = stderr_of(&out);
            assert!(out.status.success(), "round {round}: {what}: {err}");
            for bad in ["error", "CREATE", "schema", "without counting hits"] {
                assert!(!err.contains(bad), "round {round}: {what}: {err}");
            }
            warnings += err.lines().count();
        }
        assert_eq!(integrity(&sb.index()), "ok");
    }
    // Under heavy load one may give up on the index after the wait and
    // work from a walk instead: allowed, and rare.
    assert!(warnings <= 3, "{warnings} warnings");
    run_ok(sb.gocache(["scan", "--full"]));
    let v = json(&run_ok(sb.gocache(["stats", "--json", "--no-sync"])));
    assert_eq!(v["total"]["entries"], entries_on_disk(&sb.cache()));
}

/// `cmd` as a user who cannot write what it does not own: run directly
/// when this is not root; as root, in a user namespace whose uid 1000 is
/// root outside (no capabilities apply to the files there). `None` when
/// user namespaces are not available.
fn unprivileged(cmd: &Command) -> Option<Command> {
    if !rustix::process::geteuid().is_root() {
        let mut c = Command::new(cmd.get_program());
        c.args(cmd.get_args());
        copy_env(cmd, &mut c);
        return Some(c);
    }
    let ns = ["--user", "--map-user=1000", "--map-group=1000"];
    let works = Command::new("unshare")
        .args(ns)
        .arg("true")
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        return None;
    }
    let mut c = Command::new("unshare");
    c.args(ns).arg(cmd.get_program()).args(cmd.get_args());
    copy_env(cmd, &mut c);
    Some(c)
}

fn copy_env(from: &Command, to: &mut Command) {
    for (k, v) in from.get_envs() {
        match v {
            Some(v) => to.env(k, v),
            None => to.env_remove(k),
        };
    }
    if let Some(d) = from.get_current_dir() {
        to.current_dir(d);
    }
}

fn set_subdir_modes(cache: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    for sub in 0..256 {
        let d = cache.join(format!("{sub:02x}"));
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// A trim whose removals all fail reports what is still
/// on disk, names the unmet limit and why, exits 3, and prints one line
/// for its failures under -q (each under -v).
#[test]
fn a_trim_whose_removals_fail_says_what_is_left_and_exits_3() {
    let sb = scanned_sandbox();
    let on_disk = entries_on_disk(&sb.cache());
    let budget = (du(&sb.cache()) / 2).to_string();
    let trim = |extra: &[&str]| {
        let mut c = sb.gocache(["trim", "--budget", &budget]);
        c.args(extra);
        c
    };
    let Some(_) = unprivileged(&trim(&[])) else {
        eprintln!("skipped: running as root and user namespaces are unavailable");
        return;
    };
    set_subdir_modes(&sb.cache(), 0o555);

    let t = json(&run_expecting(unprivileged(&trim(&["--json"])).unwrap(), 3));
    let e = &t["executed"];
    assert_eq!(e["removed"], 0, "{t:#}");
    let failed = e["failed"].as_u64().unwrap();
    assert!(failed > 100, "{t:#}");
    assert_eq!(t["limits_met"], false);
    assert_eq!(t["after"]["total"]["entries"], on_disk, "what is on disk");
    assert_eq!(t["after"], t["before"]);
    assert_eq!(t["unmet"][0]["limit"], "budget", "{t:#}");
    let reason = t["unmet"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("{} removals failed", grouped(failed)))
            && reason.contains("ermission denied"),
        "{reason}"
    );

    // Text: the cache did not shrink, and why.
    let out = run_expecting(unprivileged(&trim(&[])).unwrap(), 3);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next().unwrap();
    let total = text.lines().find(|l| l.starts_with("  total ")).unwrap();
    let sizes = total.split(" entries ").nth(1).unwrap().trim();
    let (before, after) = sizes.split_once(" -> ").unwrap();
    assert!(line.starts_with("removed 0 entries, 0 B"), "{text}");
    assert_eq!(before, after, "{text}");
    assert!(text.contains("budget not met"), "{text}");
    // -q: one line for all the failures, and the one that says which
    // limit is left unmet.
    let out = run_expecting(unprivileged(&trim(&["-q"])).unwrap(), 3);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    let err = stderr_of(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains(&format!("could not remove {} entries", grouped(failed))),
        "{err}"
    );
    assert!(
        lines[1].starts_with("gocache: budget not met: still "),
        "{err}"
    );
    // -v: each one.
    let out = run_expecting(unprivileged(&trim(&["-v"])).unwrap(), 3);
    let each = stderr_of(&out)
        .lines()
        .filter(|l| l.contains("ermission denied"))
        .count() as u64;
    assert!(each > failed, "{each} lines for {failed} failures");
    // The hook never fails a go command: one line, exit 0.
    let out = run_ok(unprivileged(&sb.gocache(["hook", "--budget", &budget])).unwrap());
    let err = stderr_of(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("could not remove"), "{err}");

    set_subdir_modes(&sb.cache(), 0o755);
    let t = json(&run_ok(trim(&["--json"])));
    assert_eq!(t["limits_met"], true, "{t:#}");
    run_ok(sb.go(["build", "fmt"]));
}

/// On a full disk, the hook and trim evict without
/// writing the index first, and go builds again. A real small filesystem:
/// a tmpfs mounted in a user and mount namespace (skipped where those are
/// unavailable).
#[test]
fn on_a_full_disk_the_hook_and_trim_evict_and_go_builds_again() {
    let sb = Sandbox::new();
    let works = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        eprintln!("skipped: no user and mount namespaces here");
        return;
    }
    let template = template_cache();
    let size = du(template);
    let mnt = sb.root().join("small");
    let report = sb.root().join("report");
    std::fs::create_dir_all(&mnt).unwrap();
    std::fs::create_dir_all(&report).unwrap();
    // Hook to 60% of the cache, then trim to 40%, each with the
    // filesystem full.
    let script = r#"
        set -u
        mount -t tmpfs -o size=$((SIZE / 1048576 + 24))m tmpfs "$MNT" || exit 77
        C="$MNT/cache"
        cp -a "$TEMPLATE" "$C"
        find "$C" -exec touch -h -d '3 hours ago' {} +
        "$G" --cache-dir "$C" scan -q
        fill() { dd if=/dev/zero of="$MNT/filler-$1" bs=64K 2>/dev/null; echo x > "$MNT/probe" 2>/dev/null && echo "not full" > "$R/$1.full" || : > "$R/$1.full"; }
        fill 1
        touch "$C/00"   # a change for the hook's sync to write
        "$G" --cache-dir "$C" hook --json --budget $((SIZE * 6 / 10)) > "$R/hook.json" 2> "$R/hook.err"; echo $? > "$R/hook.rc"
        du -s -B1 "$C" | cut -f1 > "$R/hook.du"
        fill 2
        "$G" --cache-dir "$C" trim --json --budget $((SIZE * 4 / 10)) > "$R/trim.json" 2> "$R/trim.err"; echo $? > "$R/trim.rc"
        du -s -B1 "$C" | cut -f1 > "$R/trim.du"
        rm -f "$MNT"/filler-*
        GOCACHE="$C" go build fmt net/url > "$R/go.out" 2>&1; echo $? > "$R/go.rc"
    "#;
    let mut unshare = Command::new("unshare");
    for (k, v) in sb.env() {
        unshare.env(k, v);
    }
    let status = unshare
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", script])
        .env("SIZE", size.to_string())
        .env("MNT", &mnt)
        .env("R", &report)
        .env("TEMPLATE", template)
        .env("G", gocache_bin())
        .status()
        .unwrap();
    if status.code() == Some(77) {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    }
    let read = |f: &str| std::fs::read_to_string(report.join(f)).unwrap_or_default();
    for step in ["hook", "trim"] {
        let num = if step == "hook" { 1 } else { 2 };
        assert_eq!(read(&format!("{num}.full")), "", "the disk was full");
        assert_eq!(
            read(&format!("{step}.rc")).trim(),
            "0",
            "{}",
            read(&format!("{step}.err"))
        );
        let err = read(&format!("{step}.err"));
        assert!(err.contains("database or disk is full"), "{step}: {err}");
        let v: serde_json::Value = serde_json::from_str(&read(&format!("{step}.json"))).unwrap();
        let budget = size * if step == "hook" { 6 } else { 4 } / 10;
        let used: u64 = read(&format!("{step}.du")).trim().parse().unwrap();
        assert!(used <= budget, "{step}: du {used} > {budget}");
        if step == "hook" {
            assert_eq!(v["action"], "trimmed", "{v:#}");
        } else {
            assert_eq!(v["limits_met"], true, "{v:#}");
        }
    }
    assert_eq!(read("go.rc").trim(), "0", "{}", read("go.out"));
}

/// The budget holds by `du -s -B1` after the command
/// exits, counting the index gocache filled during the run, its WAL, and a
/// moved-aside damaged copy.
#[test]
fn the_budget_holds_by_du_after_the_command_exits_with_the_index_and_a_damaged_copy() {
    let sb = Sandbox::with_template();
    backdate(&sb.cache(), Duration::from_secs(3 * 3600));
    // A trim that creates the index: the index it fills counts.
    let budget = du(&sb.cache()) / 2;
    let t = json(&run_ok(
        sb.gocache(["trim", "--json", "--budget"])
            .arg(budget.to_string()),
    ));
    assert_eq!(t["limits_met"], true, "{t:#}");
    let used = du(&sb.cache());
    assert!(used <= budget, "du {used} > budget {budget}");
    // The hook, which leaves its WAL for the next hook.
    let budget = used * 8 / 10;
    run_ok(sb.gocache(["hook", "--budget"]).arg(budget.to_string()));
    let used = du(&sb.cache());
    assert!(used <= budget, "du {used} > budget {budget}");
    // A damaged index, moved aside inside the cache directory: counted.
    run_ok(sb.gocache(["scan", "--full"]));
    if std::fs::metadata(sb.index()).unwrap().len() <= 61 * 4096 {
        // Too few entries left for page 60: refill the index first.
        std::fs::remove_dir_all(sb.cache().join("gocache")).unwrap();
        run_ok(sb.gocache(["scan"]));
    }
    damage(&sb.index());
    let budget = used * 8 / 10;
    let t = json(&run_ok(
        sb.gocache(["trim", "--json", "--budget"])
            .arg(budget.to_string()),
    ));
    assert!(t["fallback"].as_str().unwrap().contains("damaged"), "{t:#}");
    let aside = names_starting(&sb.cache().join("gocache"), "index.sqlite.corrupt-");
    assert!(!aside.is_empty());
    let used = du(&sb.cache());
    assert!(used <= budget, "du {used} > budget {budget}");
}

/// `--index foo.db` recovery moves `foo.db` with its own
/// `foo.db-wal`, touches no `foo.sqlite-*`, and keeps only the newest
/// damaged copy.
#[test]
fn a_custom_index_is_moved_aside_with_its_own_wal_and_nothing_else() {
    let sb = Sandbox::with_template();
    let on_disk = entries_on_disk(&sb.cache());
    let dir = sb.root().join("elsewhere");
    std::fs::create_dir_all(&dir).unwrap();
    let ix = dir.join("foo.db");
    let gocache = |args: &[&str]| {
        let mut c = sb.gocache(["--index"]);
        c.arg(&ix).args(args);
        c
    };
    run_ok(gocache(&["scan"]));
    // Another program's files, under the names with_extension would give.
    for other in ["foo.sqlite-wal", "foo.sqlite-shm", "foo.sqlite"] {
        std::fs::write(dir.join(other), other).unwrap();
    }
    for round in 0..2 {
        damage(&ix);
        let v = json(&run_ok(gocache(&["stats", "--json"])));
        assert_eq!(v["index_mode"], "rebuilt", "{v:#}");
        assert_eq!(v["total"]["entries"], on_disk);
        let aside = names_starting(&dir, "foo.db.corrupt-");
        assert_eq!(
            aside.len(),
            2,
            "round {round}: only the newest copy: {aside:?}"
        );
        assert_eq!(format!("{}-wal", aside[0]), aside[1]);
        for other in ["foo.sqlite-wal", "foo.sqlite-shm", "foo.sqlite"] {
            assert_eq!(std::fs::read_to_string(dir.join(other)).unwrap(), other);
        }
        assert_eq!(integrity(&ix), "ok");
        // An older copy, as a damage found an hour ago would have left.
        if round == 0 {
            std::fs::rename(dir.join(&aside[0]), dir.join("foo.db.corrupt-1000")).unwrap();
            std::fs::rename(dir.join(&aside[1]), dir.join("foo.db.corrupt-1000-wal")).unwrap();
        }
    }
    assert!(!dir.join("foo.db.corrupt-1000").exists());
}
