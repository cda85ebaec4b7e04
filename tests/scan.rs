//! `gocache scan` and `gocache stats` against real caches built by Go.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::Value;

use crate::support::*;

/// What an independent walk of a cache finds, written without the crate's
/// code: counts and byte totals per kind.
#[derive(Debug, Default, PartialEq)]
struct Walk {
    actions: u64,
    outputs: u64,
    exes: u64,
    action_apparent: u64,
    output_apparent: u64,
    exe_apparent: u64,
    allocated: u64,
    exe_allocated: u64,
}

fn is_entry_name(name: &str, suffix: char) -> bool {
    name.len() == 66
        && name[..64]
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        && name.ends_with(&format!("-{suffix}"))
}

fn walk(cache: &Path) -> Walk {
    let mut w = Walk::default();
    for sub in 0..256 {
        let dir = cache.join(format!("{sub:02x}"));
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            let alloc = md.blocks() * 512;
            if is_entry_name(&name, 'a') && md.is_file() {
                w.actions += 1;
                w.action_apparent += md.len();
                w.allocated += alloc;
            } else if is_entry_name(&name, 'd') && md.is_file() {
                w.outputs += 1;
                w.output_apparent += md.len();
                w.allocated += alloc;
            } else if is_entry_name(&name, 'd') && md.is_dir() {
                let inner: Vec<_> = std::fs::read_dir(e.path()).unwrap().collect();
                assert_eq!(inner.len(), 1, "exe dir {name}");
                let imd = std::fs::symlink_metadata(inner[0].as_ref().unwrap().path()).unwrap();
                w.exes += 1;
                w.exe_apparent += imd.len();
                w.allocated += alloc + imd.blocks() * 512;
                w.exe_allocated += alloc + imd.blocks() * 512;
            }
        }
    }
    w
}

fn u(v: &Value, path: &str) -> u64 {
    path.split('.')
        .fold(v, |v, k| &v[k])
        .as_u64()
        .unwrap_or_else(|| panic!("{path} missing in {v:#}"))
}

fn subdir_mtimes(cache: &Path) -> Vec<Option<std::time::SystemTime>> {
    (0..256)
        .map(|s| {
            std::fs::symlink_metadata(cache.join(format!("{s:02x}")))
                .and_then(|m| m.modified())
                .ok()
        })
        .collect()
}

#[test]
fn scan_of_a_real_cache_matches_an_independent_walk() {
    let sb = Sandbox::with_template();
    let expected = walk(&sb.cache());
    assert!(
        expected.actions > 1000 && expected.outputs > 500 && expected.exes == 2,
        "{expected:?}"
    );

    let scan = json(&run_ok(sb.gocache(["scan", "--json"])));
    assert_eq!(scan["rescanned"].as_array().unwrap().len(), 256);
    assert_eq!(
        u(&scan, "added"),
        expected.actions + expected.outputs + expected.exes
    );
    assert_eq!(u(&scan, "action_files_read"), expected.actions);

    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    assert_eq!(u(&s, "synced_subdirs"), 0, "nothing changed since the scan");
    assert_eq!(u(&s, "kinds.action.entries"), expected.actions);
    assert_eq!(u(&s, "kinds.output.entries"), expected.outputs);
    assert_eq!(u(&s, "kinds.exe.entries"), expected.exes);
    assert_eq!(u(&s, "kinds.action.apparent_bytes"), expected.actions * 175);
    assert_eq!(
        u(&s, "kinds.action.apparent_bytes"),
        expected.action_apparent
    );
    assert_eq!(
        u(&s, "kinds.output.apparent_bytes"),
        expected.output_apparent
    );
    assert_eq!(u(&s, "kinds.exe.apparent_bytes"), expected.exe_apparent);
    assert_eq!(u(&s, "total.allocated_bytes"), expected.allocated);
    assert_eq!(s["tiers"][1]["tier"], "exe");
    assert_eq!(u(&s["tiers"][1], "allocated_bytes"), expected.exe_allocated);
    let programs: BTreeSet<&str> = s["largest_exes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["program"].as_str().unwrap())
        .collect();
    assert_eq!(programs, BTreeSet::from(["hello", "hola"]));
    // A cache Go just built has no garbage and nothing odd.
    assert_eq!(u(&s, "garbage.dangling_actions.entries"), 0);
    assert_eq!(u(&s, "garbage.corrupt_actions.entries"), 0);
    assert_eq!(u(&s, "other.odd.entries"), 0);
    assert!(u(&s, "other.go.entries") >= 2, "README and trim.txt");
    // The allocated total is what du counts for the entries (du also counts
    // the directories themselves, Go's files and the index).
    let du = std::process::Command::new("du")
        .args(["-s", "--block-size=1"])
        .arg(sb.cache())
        .output()
        .unwrap();
    let du: u64 = String::from_utf8_lossy(&du.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        du >= expected.allocated && du - expected.allocated < 8 << 20,
        "du {du} vs {expected:?}"
    );
}

#[test]
fn incremental_scan_after_go_run_rereads_only_changed_subdirs() {
    let sb = Sandbox::with_template();
    run_ok(sb.gocache(["scan"]));
    let before = subdir_mtimes(&sb.cache());
    // Let a second pass of the racy-mtime window go by for the template's
    // subdirectories, so only real changes count.
    let dir = sb.write_hello("adios", "adios, mundo");
    let out = run_ok(sb.go(["run", "."]).current_dir(&dir));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "adios, mundo\n");
    let after = subdir_mtimes(&sb.cache());
    let changed: Vec<u64> = (0..256)
        .filter(|&s| before[s] != after[s])
        .map(|s| s as u64)
        .collect();
    assert!(!changed.is_empty() && changed.len() < 64, "{changed:?}");

    let scan = json(&run_ok(sb.gocache(["scan", "--json"])));
    let rescanned: Vec<u64> = scan["rescanned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    // Every changed subdirectory is reread; others only if the last scan
    // could not trust their mtime (changed within RACY_SECS of it).
    for s in &changed {
        assert!(
            rescanned.contains(s),
            "changed subdir {s:02x} not rescanned: {rescanned:?}"
        );
    }
    assert!(
        rescanned.len() < 128,
        "rescanned {} subdirs",
        rescanned.len()
    );

    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    assert_eq!(u(&s, "kinds.exe.entries"), 3);
    let adios: Vec<&Value> = s["largest_exes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["program"] == "adios")
        .collect();
    assert_eq!(adios.len(), 1, "exactly the new executable");
    // Its action entry names it: no orphan output.
    assert_eq!(u(&s, "garbage.orphan_outputs.entries"), 0);
    assert_eq!(u(&s, "garbage.dangling_actions.entries"), 0);
    let w = walk(&sb.cache());
    assert_eq!(u(&s, "kinds.action.entries"), w.actions);
    assert_eq!(u(&s, "kinds.output.entries"), w.outputs);

    // A rescan with no change rereads nothing.
    std::thread::sleep(std::time::Duration::from_millis(10));
    let again = json(&run_ok(sb.gocache(["scan", "--json"])));
    assert_eq!(
        u(&again, "added") + u(&again, "removed") + u(&again, "updated"),
        0
    );
}

#[test]
fn deletions_behind_the_index_and_go_clean_are_picked_up() {
    let sb = Sandbox::with_template();
    run_ok(sb.gocache(["scan"]));
    // Remove five outputs and three action entries behind gocache's back.
    let mut removed = 0;
    'outer: for sub in 0..256 {
        for e in std::fs::read_dir(sb.cache().join(format!("{sub:02x}"))).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let is_out = is_entry_name(&name, 'd') && e.file_type().unwrap().is_file();
            let is_act = is_entry_name(&name, 'a');
            if (is_out && removed < 5) || (is_act && (5..8).contains(&removed)) {
                std::fs::remove_file(e.path()).unwrap();
                removed += 1;
                if removed == 8 {
                    break 'outer;
                }
            }
        }
    }
    assert_eq!(removed, 8);
    let scan = json(&run_ok(sb.gocache(["scan", "--json"])));
    assert_eq!(u(&scan, "removed"), 8);
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    let w = walk(&sb.cache());
    assert_eq!(u(&s, "total.entries"), w.actions + w.outputs + w.exes);
    assert!(
        u(&s, "garbage.dangling_actions.entries") >= 1,
        "actions whose output we removed"
    );

    run_ok(sb.go(["clean", "-cache"]));
    let scan = json(&run_ok(sb.gocache(["scan", "--json"])));
    assert_eq!(u(&scan, "entries"), 0);
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    assert_eq!(u(&s, "total.entries"), 0);
    // go clean -cache left gocache's own directory alone.
    assert!(sb.index().exists());
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn odd_things_are_reported_and_never_followed() {
    let sb = Sandbox::with_template();
    let cache = sb.cache();
    let outside = sb.root().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("precious"), "do not touch").unwrap();
    let hex = |c: char| std::iter::repeat_n(c, 64).collect::<String>();

    // A malformed action entry, a short one, one naming another action.
    std::fs::write(cache.join(format!("aa/{}-a", hex('a'))), "v1 garbage\n").unwrap();
    std::fs::write(
        cache.join(format!("ab/ab{}-a", &hex('0')[2..])),
        vec![b'x'; 175],
    )
    .unwrap();
    // A symlink named like an executable entry, pointing outside.
    std::os::unix::fs::symlink(&outside, cache.join(format!("bb/{}-d", hex('b')))).unwrap();
    // A stray symlink, a stray file, a temp file.
    std::os::unix::fs::symlink("/etc/passwd", cache.join("cc/passwd")).unwrap();
    std::fs::write(cache.join("cc/notes.txt"), "hi").unwrap();
    std::fs::write(cache.join(format!("cc/{}-d.tmp", hex('c'))), "partial").unwrap();
    // A fifo (reading it would block forever).
    let fifo = cache.join(format!("dd/{}-a", hex('d')));
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // An executable directory with two files, and one with a subdirectory.
    let two = cache.join(format!("ee/{}-d", hex('e')));
    std::fs::create_dir(&two).unwrap();
    std::fs::write(two.join("a"), "1").unwrap();
    std::fs::write(two.join("b"), "2").unwrap();
    let sub = cache.join(format!("ef/ef{}-d", &hex('1')[2..]));
    std::fs::create_dir_all(sub.join("nested")).unwrap();
    // A symlink where a subdirectory belongs.
    std::fs::remove_dir_all(cache.join("fe")).unwrap();
    std::os::unix::fs::symlink(&outside, cache.join("fe")).unwrap();

    let out = run_ok(sb.gocache(["scan"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("odd items"));
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    assert_eq!(
        u(&s, "garbage.corrupt_actions.entries"),
        2,
        "{:#}",
        s["garbage"]
    );
    let odd: Vec<(String, String)> = s["other"]["odd_items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["path"].as_str().unwrap().to_string(),
                o["what"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let find = |p: &str| {
        odd.iter()
            .find(|(path, _)| path.contains(p))
            .map(|(_, w)| w.as_str())
    };
    assert!(
        find(&format!("bb/{}", hex('b')))
            .unwrap()
            .contains("symlink"),
        "{odd:?}"
    );
    assert!(find("cc/passwd").unwrap().contains("symlink"));
    assert!(find("cc/notes.txt").unwrap().contains("stray"));
    assert!(find(&format!("dd/{}", hex('d'))).unwrap().contains("fifo"));
    assert!(
        find(&format!("ee/{}", hex('e')))
            .unwrap()
            .contains("2 entries")
    );
    assert!(
        find("ef/ef").unwrap().contains("1 entries")
            || find("ef/ef").unwrap().contains("directory")
    );
    assert!(find("fe").unwrap().contains("symlink"));
    assert_eq!(u(&s, "other.odd.entries"), 8, "{odd:?}");
    // Nothing outside was touched.
    assert_eq!(
        std::fs::read_to_string(outside.join("precious")).unwrap(),
        "do not touch"
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
}

#[test]
fn an_unreadable_subdirectory_is_reported_and_rescanned() {
    let sb = Sandbox::with_template();
    run_ok(sb.gocache(["scan"]));
    let before = json(&run_ok(sb.gocache(["stats", "--json"])));
    let locked = sb.cache().join("7f");
    std::fs::write(locked.join("new-stray-file"), "x").unwrap();
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let mut cmd = if is_root() {
        // Root reads anything: run gocache as nobody, on a world-readable
        // copy of the sandbox, with the index somewhere nobody can write.
        make_world_accessible(sb.root());
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(gocache_bin());
        for (k, v) in sb.env() {
            c.env(k, v);
        }
        c
    } else {
        sb.gocache(Vec::<&str>::new())
    };
    let out = cmd.args(["stats", "--json"]).output().unwrap();
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("7f") && stderr.contains("warning"),
        "{stderr}"
    );
    let s = json(&out);
    // The entries of 7f are still counted from the index (or the walk
    // simply could not see them); the rest of the cache is all there.
    assert!(u(&s, "total.entries") <= u(&before, "total.entries"));
    assert!(u(&s, "total.entries") > u(&before, "total.entries") / 2);
    // Readable again: the next scan rereads 7f and finds the stray file.
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    assert!(
        s["other"]["odd_items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["path"] == "7f/new-stray-file"),
        "{:#}",
        s["other"]
    );
}

fn make_world_accessible(root: &Path) {
    let status = std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(root)
        .status()
        .unwrap();
    assert!(status.success());
    // chmod -R also opened 7f up again: close it.
    let locked = root.join("cache/7f");
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
}
