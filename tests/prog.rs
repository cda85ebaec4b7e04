//! `gocache prog`: the go command using gocache as its GOCACHEPROG.

use std::io::{BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use crate::support::*;

fn with_prog(mut cmd: Command) -> Command {
    cmd.env("GOCACHEPROG", format!("{} prog", gocache_bin().display()));
    cmd
}

/// The latest session's counters.
fn last_session(sb: &Sandbox) -> (u64, u64, u64, u64) {
    let conn = rusqlite::Connection::open(sb.index()).unwrap();
    conn.query_row(
        "SELECT gets, hits, misses, puts FROM prog_sessions ORDER BY id DESC LIMIT 1",
        [],
        |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u64,
                r.get::<_, i64>(3)? as u64,
            ))
        },
    )
    .unwrap()
}

fn outputs(cache: &std::path::Path) -> std::collections::BTreeSet<String> {
    let mut s = std::collections::BTreeSet::new();
    for sub in 0..256 {
        if let Ok(rd) = std::fs::read_dir(cache.join(format!("{sub:02x}"))) {
            for e in rd {
                s.insert(e.unwrap().file_name().into_string().unwrap());
            }
        }
    }
    s
}

#[test]
fn go_build_std_twice_through_prog_is_all_hits_the_second_time_and_plain_go_reuses_it() {
    let sb = Sandbox::new();
    run_ok(with_prog(sb.go(["build", "std"])));
    let (gets, hits, misses, puts) = last_session(&sb);
    assert!(
        gets > 300 && misses > 300 && puts > 300,
        "{gets} {hits} {misses} {puts}"
    );
    let first = outputs(&sb.cache());
    assert!(first.iter().all(|n| !n.starts_with(".gocache-tmp-")));

    run_ok(with_prog(sb.go(["build", "std"])));
    let (gets, hits, misses, puts) = last_session(&sb);
    assert_eq!((hits, misses, puts), (gets, 0, 0), "second build: all hits");
    assert_eq!(outputs(&sb.cache()), first, "the same outputs, nothing new");

    // Plain go uses what prog stored: nothing to rebuild (-v lists
    // packages it builds).
    let out = run_ok(sb.go(["build", "-v", "std"]));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "plain go rebuilt something"
    );
    // And stats sees the entries prog stored, with their hits.
    let s: Value = serde_json::from_slice(&run_ok(sb.gocache(["stats", "--json"])).stdout).unwrap();
    assert!(s["kinds"]["output"]["entries"].as_u64().unwrap() > 300);
    // ...and the hit rate of each go command prog served, newest first.
    let sessions = s["prog_sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0]["hits"], sessions[0]["gets"]);
    assert_eq!(sessions[1]["hits"], 0);
}

#[test]
fn a_plain_cache_serves_prog_and_go_test_results_are_cached_through_it() {
    let sb = Sandbox::with_template();
    // What plain go just built, the same build through prog finds, every
    // action of it. (The template alone is not enough: a second plain
    // `go build std` on it adds entries too, as any new package list does.)
    run_ok(sb.go(["build", "std"]));
    run_ok(with_prog(sb.go(["build", "std"])));
    let (gets, hits, misses, _) = last_session(&sb);
    assert!(gets > 300);
    assert_eq!((hits, misses), (gets, 0));

    let lib = sb.root().join("work/calc");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(lib.join("go.mod"), "module example.com/calc\n\ngo 1.24\n").unwrap();
    std::fs::write(
        lib.join("calc.go"),
        "package calc\n\nfunc Mul(a, b int) int { return a * b }\n",
    )
    .unwrap();
    std::fs::write(
        lib.join("calc_test.go"),
        "package calc\n\nimport \"testing\"\n\nfunc TestMul(t *testing.T) {\n\tif Mul(2, 3) != 6 {\n\t\tt.Fatal()\n\t}\n}\n",
    )
    .unwrap();
    let first = run_ok(with_prog(sb.go(["test", "./..."])).current_dir(&lib));
    assert!(!String::from_utf8_lossy(&first.stdout).contains("(cached)"));
    let second = run_ok(with_prog(sb.go(["test", "./..."])).current_dir(&lib));
    assert!(
        String::from_utf8_lossy(&second.stdout).contains("(cached)"),
        "{}",
        String::from_utf8_lossy(&second.stdout)
    );
}

#[test]
fn go_run_through_prog_caches_no_executable_as_its_help_says() {
    let sb = Sandbox::with_template();
    let exes = |sb: &Sandbox| {
        json(&run_ok(sb.gocache(["stats", "--json"])))["kinds"]["exe"]["entries"]
            .as_u64()
            .unwrap()
    };
    let before = exes(&sb);
    let dir = sb.write_hello("viaprog", "served by prog");
    let out = run_ok(with_prog(sb.go(["run", "."])).current_dir(&dir));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "served by prog\n");
    assert_eq!(
        exes(&sb),
        before,
        "go run under GOCACHEPROG cached a binary"
    );
    let help = String::from_utf8_lossy(&run_ok(sb.gocache(["prog", "--help"])).stdout).into_owned();
    assert!(help.contains("cache no executables"), "{help}");
    assert!(!help.contains("on-disk cache for `go run`"), "{help}");
}

#[test]
fn a_budget_smaller_than_std_holds_while_prog_builds_by_lru_when_no_policy_is_set() {
    let sb = Sandbox::with_template();
    backdate(&sb.cache(), Duration::from_secs(3 * 3600));
    let budget: u64 = 100 << 20;
    run_ok(sb.gocache(["limits", "--budget"]).arg(budget.to_string()));
    // -N changes every action ID: a fresh build of net/http and its
    // dependencies, while the template's std (old) may be evicted.
    run_ok(with_prog(sb.go(["build", "-gcflags=all=-N", "net/http"])));
    let (_, _, misses, puts) = last_session(&sb);
    assert!(misses > 30 && puts > 30);
    let s: Value = serde_json::from_slice(&run_ok(sb.gocache(["stats", "--json"])).stdout).unwrap();
    let total = s["total"]["allocated_bytes"].as_u64().unwrap();
    assert!(total <= budget, "cache {total} over budget {budget}");
    // With no policy set, prog's trims took lru's order, as every other
    // command's do: they evicted (the budget held) and recorded no
    // GreedyDual clock, which gdsf and gd-cost's trims always do (see
    // prog_trims_by_the_stored_cost_aware_policy_with_measured_costs).
    let conn = rusqlite::Connection::open(sb.index()).unwrap();
    let clock: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'gdsf_clock'", [], |r| {
            r.get(0)
        })
        .ok();
    assert!(
        clock.is_none(),
        "prog's trims ran a GreedyDual policy: {clock:?}"
    );
    let limits = String::from_utf8_lossy(&run_ok(sb.gocache(["limits"])).stdout).into_owned();
    let policy = limits.lines().find(|l| l.contains("policy")).unwrap_or("");
    assert!(
        policy.contains("lru") && policy.contains("default") && !limits.contains("gdsf under"),
        "{limits}"
    );
    // What prog stored is all there and usable.
    run_ok(with_prog(sb.go(["build", "-gcflags=all=-N", "net/http"])));
    let (gets, hits, _, _) = last_session(&sb);
    assert_eq!(hits, gets);
}

/// Starts `gocache prog` on the sandbox's cache and returns it with its
/// stdout lines.
fn spawn_prog(sb: &Sandbox) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    std::fs::create_dir_all(sb.cache()).unwrap();
    spawn_prog_with(sb.gocache(["prog"]))
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn sha256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

/// A put request with its body, as go writes it.
fn put_request(id: u64, action: &[u8; 32], body: &[u8]) -> String {
    format!(
        "{{\"ID\":{id},\"Command\":\"put\",\"ActionID\":\"{}\",\"OutputID\":\"{}\",\"BodySize\":{}}}\n\n\"{}\"\n",
        b64(action),
        b64(&sha256(body)),
        body.len(),
        b64(body)
    )
}

fn get_request(id: u64, action: &[u8; 32]) -> String {
    format!(
        "{{\"ID\":{id},\"Command\":\"get\",\"ActionID\":\"{}\"}}\n",
        b64(action)
    )
}

/// Sends `close` as request `id`; checks its answer and a clean exit.
fn close_prog(
    mut child: std::process::Child,
    mut stdin: std::process::ChildStdin,
    out: &mut BufReader<std::process::ChildStdout>,
    id: u64,
) {
    stdin
        .write_all(format!("{{\"ID\":{id},\"Command\":\"close\"}}\n").as_bytes())
        .unwrap();
    drop(stdin);
    assert_eq!(read_response(out)["ID"], id);
    assert!(child.wait().unwrap().success());
}

/// Descriptor slots the process `pid` has room for (`FDSize` in its
/// /proc status).
#[cfg(target_os = "linux")]
fn fd_slots(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("FDSize:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no FDSize in {status}"))
}

/// Growing a threaded process's descriptor table waits for an RCU grace
/// period (8-35 ms measured, inside a get): prog makes room for its
/// descriptors before it serves, so opening all 256 subdirectories never
/// grows the table while go waits.
#[cfg(target_os = "linux")]
#[test]
fn the_descriptor_table_has_room_before_the_first_get_and_never_grows_while_serving() {
    let sb = Sandbox::new();
    let (mut child, mut out) = spawn_prog(&sb);
    let pid = child.id();
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let want = gocache::prog::RESERVED_DESCRIPTORS.min(limit);
    let before = fd_slots(pid);
    assert!(before >= want, "{before} slots before serving, want {want}");
    // A get in every subdirectory opens all 256 of them (misses: the
    // cache is empty, but go's layout has every subdirectory).
    let mut stdin = child.stdin.take().unwrap();
    for s in 0..=255u8 {
        let mut action = [s; 32];
        action[31] = 0x5a;
        stdin
            .write_all(get_request(u64::from(s) + 1, &action).as_bytes())
            .unwrap();
    }
    stdin.flush().unwrap();
    for _ in 0..=255u8 {
        assert_eq!(read_response(&mut out)["Miss"], true);
    }
    assert_eq!(fd_slots(pid), before, "the table grew while serving");
    close_prog(child, stdin, &mut out, 1000);
}

fn no_entries_or_temps(sb: &Sandbox) {
    let names = outputs(&sb.cache());
    assert!(names.is_empty(), "left behind: {names:?}");
}

#[test]
fn malformed_streams_get_errors_and_leave_no_partial_entry() {
    let body = b"hello, cache";
    let good_out = b64(&sha256(body));
    let action = b64(&[7u8; 32]);

    // Answered with an error for that ID; the stream goes on.
    let sb = Sandbox::new();
    let (mut child, mut out) = spawn_prog(&sb);
    let mut stdin = child.stdin.take().unwrap();
    let cases = [
        "{\"ID\":1,\"Command\":\"fly\"}\n".to_string(),
        "{\"ID\":2,\"Command\":\"get\",\"ActionID\":\"AAAA\"}\n".to_string(),
        format!(
            "{{\"ID\":3,\"Command\":\"put\",\"ActionID\":\"{action}\",\"OutputID\":\"{}\",\"BodySize\":{}}}\n\n\"{}\"\n",
            b64(&[9u8; 32]),
            body.len(),
            b64(body)
        ),
        format!(
            "{{\"ID\":4,\"Command\":\"put\",\"ActionID\":\"{action}\",\"OutputID\":\"{good_out}\",\"BodySize\":{}}}\n\n\"{}\"\n",
            body.len(),
            "QUJD*EVG"
        ),
        format!(
            "{{\"ID\":5,\"Command\":\"put\",\"ActionID\":\"{action}\",\"OutputID\":\"{good_out}\",\"BodySize\":{}}}\n\n\"{}\"\n",
            body.len() + 5,
            b64(body)
        ),
    ];
    for (i, c) in cases.iter().enumerate() {
        stdin.write_all(c.as_bytes()).unwrap();
        stdin.flush().unwrap();
        let r = read_response(&mut out);
        assert_eq!(r["ID"], (i + 1) as u64, "{r}");
        assert!(
            r["Err"].as_str().is_some_and(|e| !e.is_empty()),
            "case {}: {r}",
            i + 1
        );
    }
    // A miss, then a good put and a hit.
    stdin
        .write_all(
            format!("{{\"ID\":6,\"Command\":\"get\",\"ActionID\":\"{action}\"}}\n\n").as_bytes(),
        )
        .unwrap();
    stdin.flush().unwrap();
    assert_eq!(read_response(&mut out)["Miss"], true);
    stdin
        .write_all(b"{\"ID\":7,\"Command\":\"close\"}\n\n")
        .unwrap();
    drop(stdin);
    assert_eq!(read_response(&mut out)["ID"], 7);
    assert!(child.wait().unwrap().success());
    no_entries_or_temps(&sb);

    // Unusable streams: a clear message and a non-zero exit, no panic,
    // nothing stored.
    for bad in [
        "{not json\n".to_string(),
        "{\"Command\":\"get\"}\n".to_string(),
        format!(
            "{{\"ID\":1,\"Command\":\"put\",\"ActionID\":\"{action}\",\"OutputID\":\"{good_out}\",\"BodySize\":{}}}\n\n\"{}",
            body.len(),
            &b64(body)[..8]
        ),
    ] {
        let sb = Sandbox::new();
        let (mut child, _out) = spawn_prog(&sb);
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(bad.as_bytes()).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("gocache prog: ") && !err.contains("panicked"),
            "{bad:?}: {err}"
        );
        no_entries_or_temps(&sb);
    }
}

#[test]
fn a_get_never_reads_or_touches_through_a_symlinked_subdirectory() {
    let body = b"hello, cache";
    let action = [7u8; 32];
    let put = |id: u64| put_request(id, &action, body);
    let get = |id: u64| get_request(id, &action);
    let sb = Sandbox::new();
    let (mut child, mut out) = spawn_prog(&sb);
    let mut stdin = child.stdin.take().unwrap();
    // As go does: the get after the put's response.
    stdin.write_all(put(1).as_bytes()).unwrap();
    stdin.flush().unwrap();
    assert_eq!(read_response(&mut out)["ID"], 1);
    stdin.write_all(get(2).as_bytes()).unwrap();
    stdin.flush().unwrap();
    let hit = read_response(&mut out);
    assert!(
        hit["DiskPath"]
            .as_str()
            .is_some_and(|p| p.starts_with(sb.cache().to_str().unwrap())),
        "{hit}"
    );
    close_prog(child, stdin, &mut out, 3);

    // The action's subdirectory becomes a symlink to a copy outside the
    // cache, old enough that a get would refresh its mtime.
    let outside = sb.root().join("outside");
    let sub = sb.cache().join("07");
    std::fs::rename(&sub, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &sub).unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(3 * 3600);
    for e in std::fs::read_dir(&outside).unwrap() {
        let f = std::fs::File::options()
            .write(true)
            .open(e.unwrap().path())
            .unwrap();
        f.set_modified(old).unwrap();
    }
    let mtimes = || -> Vec<std::time::SystemTime> {
        let mut v: Vec<_> = std::fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().modified().unwrap())
            .collect();
        v.sort();
        v
    };
    let before = mtimes();
    let (mut child, mut out) = spawn_prog(&sb);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(get(1).as_bytes()).unwrap();
    stdin.flush().unwrap();
    assert_eq!(read_response(&mut out)["Miss"], true);
    close_prog(child, stdin, &mut out, 2);
    assert_eq!(mtimes(), before, "a file outside the cache was touched");
}

#[test]
fn a_put_never_writes_through_a_symlinked_subdirectory() {
    let action = [7u8; 32];
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.cache()).unwrap();
    // Go's README, as go leaves it before it starts its GOCACHEPROG (a
    // directory holding nothing but a symlink is no Go cache to gocache).
    std::fs::write(sb.cache().join("README"), gocache::cachedir::GO_README).unwrap();
    // The action's subdirectory is a symlink to a directory outside.
    let outside = sb.root().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let sub = sb.cache().join("07");
    std::os::unix::fs::symlink(&outside, &sub).unwrap();
    let (mut child, mut out) = spawn_prog(&sb);
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(put_request(1, &action, b"hello, cache").as_bytes())
        .unwrap();
    stdin.flush().unwrap();
    let r = read_response(&mut out);
    assert_eq!(r["ID"], 1);
    // The put succeeds: go may need to read what it put (its module index
    // does). The output is in place in its own, real subdirectory; only
    // the action entry is not written (a later get misses).
    assert!(r["Err"].is_null(), "{r}");
    let path = std::path::PathBuf::from(r["DiskPath"].as_str().unwrap());
    let output = sha256(b"hello, cache");
    let hex: String = output.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        path,
        sb.cache().join(&hex[..2]).join(format!("{hex}-d")),
        "{r}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"hello, cache");
    assert!(path.parent().unwrap().symlink_metadata().unwrap().is_dir());
    stdin.write_all(get_request(2, &action).as_bytes()).unwrap();
    stdin.flush().unwrap();
    assert_eq!(read_response(&mut out)["Miss"], true);
    close_prog(child, stdin, &mut out, 3);
    let written: Vec<_> = std::fs::read_dir(&outside).unwrap().collect();
    assert!(written.is_empty(), "written outside the cache: {written:?}");
    assert!(sub.symlink_metadata().unwrap().file_type().is_symlink());
}

/// The latest session's error count.
fn last_session_errors(sb: &Sandbox) -> u64 {
    let conn = rusqlite::Connection::open(sb.index()).unwrap();
    conn.query_row(
        "SELECT errors FROM prog_sessions ORDER BY id DESC LIMIT 1",
        [],
        |r| r.get::<_, i64>(0),
    )
    .unwrap() as u64
}

/// Every entry file of the cache, and the temporary files among them.
fn files_and_temps(cache: &std::path::Path) -> (usize, Vec<String>) {
    let names = outputs(cache);
    let temps = names
        .iter()
        .filter(|n| n.starts_with(".gocache-tmp-"))
        .cloned()
        .collect();
    (names.len(), temps)
}

#[test]
fn a_put_that_cannot_be_put_in_place_is_handed_over_from_inside_the_cache_and_serving_goes_on() {
    // Half the subdirectories are symlinks to directories outside the
    // cache (holding what they held): every put whose output lands there
    // is not cached, yet answered with a path inside the cache, and
    // nothing there may change.
    let sb = Sandbox::with_template();
    let outside = sb.root().join("outside");
    std::fs::create_dir(&outside).unwrap();
    for s in 0x80..=0xffu8 {
        let sub = sb.cache().join(format!("{s:02x}"));
        let away = outside.join(format!("{s:02x}"));
        std::fs::rename(&sub, &away).unwrap();
        std::os::unix::fs::symlink(&away, &sub).unwrap();
    }
    let listing = || {
        let mut v = Vec::new();
        for s in 0x80..=0xffu8 {
            for e in std::fs::read_dir(outside.join(format!("{s:02x}"))).unwrap() {
                let e = e.unwrap();
                v.push((e.file_name(), e.metadata().unwrap().modified().unwrap()));
            }
        }
        v.sort();
        v
    };
    let before = listing();
    // The protocol first: the answer names the write and the
    // subdirectory, and the next requests are served.
    let (mut child, mut out) = spawn_prog(&sb);
    let mut stdin = child.stdin.take().unwrap();
    let (mut bad, mut good) = (None, None);
    for i in 0u32.. {
        let body = format!("body {i}").into_bytes();
        match sha256(&body)[0] {
            0x80.. if bad.is_none() => bad = Some(body),
            ..0x80 if good.is_none() => good = Some(body),
            _ => {}
        }
        if bad.is_some() && good.is_some() {
            break;
        }
    }
    let (bad, good) = (bad.unwrap(), good.unwrap());
    let action = [0x11u8; 32];
    stdin
        .write_all(put_request(1, &action, &bad).as_bytes())
        .unwrap();
    stdin.flush().unwrap();
    let r = read_response(&mut out);
    assert!(r["Err"].is_null(), "{r}");
    let kept = std::path::PathBuf::from(r["DiskPath"].as_str().unwrap());
    assert!(kept.starts_with(sb.cache()), "{r}");
    assert_eq!(std::fs::read(&kept).unwrap(), bad);
    let sub = format!("{:02x}", sha256(&bad)[0]);
    assert!(!kept.starts_with(sb.cache().join(&sub)), "{r}");
    stdin
        .write_all((put_request(2, &action, &good) + &get_request(3, &action)).as_bytes())
        .unwrap();
    stdin.flush().unwrap();
    let (a, b) = (read_response(&mut out), read_response(&mut out));
    let hit = if a["ID"] == 3 { a } else { b };
    assert_eq!(hit["Size"], good.len() as u64, "{hit}");
    close_prog(child, stdin, &mut out, 4);
    assert!(!kept.exists(), "the temporary file outlived the session");

    // And the real go command, module index on (it treats a failed put as
    // fatal): the build succeeds, with one warning, and no temporary file
    // outlives it.
    let dir = sb.write_hello("stored", "half stored");
    let mut go = with_prog(sb.go(["build", "-gcflags=all=-N", "-o", "hello", "."]));
    go.current_dir(&dir);
    let out = run_ok(go);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("GOCACHEPROG"), "{err}");
    assert_eq!(err.matches("gocache prog: warning: ").count(), 1, "{err}");
    assert!(err.contains("not cached"), "{err}");
    let (_, _, misses, puts) = last_session(&sb);
    assert!(misses > 20 && puts > 10, "{misses} misses, {puts} puts");
    assert_eq!(last_session_errors(&sb), 0);
    assert!(files_and_temps(&sb.cache()).1.is_empty());
    assert_eq!(listing(), before, "something outside the cache changed");
    let hello = std::process::Command::new(dir.join("hello"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&hello.stdout), "half stored\n");
}

/// With one subdirectory a symlink, `go build -a ./...`
/// through prog passes (go's module index fails the build on a failed
/// put), nothing outside the cache is written, and no temporary file is
/// left.
#[test]
fn go_build_a_passes_with_a_symlinked_subdirectory_and_nothing_outside_is_written() {
    let sb = Sandbox::with_template();
    let outside = sb.root().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let ab = sb.cache().join("ab");
    std::fs::remove_dir_all(&ab).unwrap();
    std::os::unix::fs::symlink(&outside, &ab).unwrap();
    let dir = sb.write_hello("linked", "linked");
    let mut go = with_prog(sb.go(["build", "-a", "./..."]));
    go.current_dir(&dir);
    let out = run_ok(go);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.matches("gocache prog: warning: ").count() <= 1, "{err}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    assert!(ab.symlink_metadata().unwrap().file_type().is_symlink());
    assert!(files_and_temps(&sb.cache()).1.is_empty());
}

/// A `gocache prog` that may write files of at most `kib` KiB, as a script
/// go can start: a stand-in for a disk that fills up.
fn prog_with_file_limit(sb: &Sandbox, kib: u64) -> std::path::PathBuf {
    let script = sb.root().join("prog-limited.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nulimit -f {}\nexec '{}' prog \"$@\"\n",
            kib * 2, // 512-byte blocks, or more where the shell counts KiB
            gocache_bin().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script
}

#[test]
fn a_write_that_fails_half_way_answers_that_put_with_the_write_and_serving_goes_on() {
    let sb = Sandbox::with_template();
    let limited = prog_with_file_limit(&sb, 1024);
    // The protocol: a 4 MiB body passes the limit part way through.
    let mut cmd = Command::new(&limited);
    for (k, v) in sb.env() {
        cmd.env(k, v);
    }
    let (mut child, mut out) = spawn_prog_with(cmd);
    let mut stdin = child.stdin.take().unwrap();
    let big: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    let (a1, a2) = ([0x21u8; 32], [0x22u8; 32]);
    let writer = std::thread::spawn(move || {
        stdin
            .write_all((put_request(1, &a1, &big) + &put_request(2, &a2, b"small")).as_bytes())
            .unwrap();
        stdin.flush().unwrap();
        stdin
    });
    let r = read_response(&mut out);
    assert_eq!(r["ID"], 1);
    let err = r["Err"].as_str().unwrap_or_default();
    assert!(
        err.starts_with("writing ") && err.contains(sb.cache().to_str().unwrap()),
        "{r}"
    );
    let r = read_response(&mut out);
    assert_eq!(r["ID"], 2);
    assert!(r["Err"].is_null(), "{r}");
    let mut stdin = writer.join().unwrap();
    stdin.write_all(get_request(3, &a2).as_bytes()).unwrap();
    stdin.flush().unwrap();
    assert_eq!(read_response(&mut out)["Size"], 5);
    close_prog(child, stdin, &mut out, 4);
    assert!(files_and_temps(&sb.cache()).1.is_empty());

    // The real go command, whose larger outputs (runtime, fmt) cannot be
    // stored: the build succeeds and says nothing of GOCACHEPROG.
    let dir = sb.write_hello("limited", "limited");
    let mut go = sb.go(["build", "-gcflags=all=-N", "-o", "hello", "."]);
    go.current_dir(&dir)
        .env("GOCACHEPROG", limited.to_str().unwrap());
    let out = run_ok(go);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("GOCACHEPROG"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, _, _, puts) = last_session(&sb);
    assert!(puts > 10 && last_session_errors(&sb) > 0);
    assert!(files_and_temps(&sb.cache()).1.is_empty());
}
#[test]
fn an_endless_request_line_stops_the_server_with_a_message_not_a_bigger_process() {
    let sb = Sandbox::new();
    let (mut child, _out) = spawn_prog(&sb);
    let mut stdin = child.stdin.take().unwrap();
    // 64 MiB without a newline; the server must stop long before.
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        let mut sent = 0;
        while sent < 64 && stdin.write_all(&chunk).is_ok() {
            sent += 1;
        }
        sent
    });
    let out = child.wait_with_output().unwrap();
    let sent = writer.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("gocache prog: a request line is longer than 1024 KiB")
            && err.contains("xxxx"),
        "{err}"
    );
    assert!(sent < 64, "the server read all {sent} MiB");
}

/// Hits the index holds: counted on its entries, plus those waiting for a
/// scan to find their entries.
/// Waits up to 20 s for `done`: a session's last uses reach the index
/// just after go exits (the server no longer holds go up for them).
fn settle(mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !done() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn index_hits(sb: &Sandbox) -> u64 {
    let conn = rusqlite::Connection::open(sb.index()).unwrap();
    conn.query_row(
        "SELECT (SELECT coalesce(sum(hits), 0) FROM entries)
              + (SELECT coalesce(sum(hits), 0) FROM pending_uses)",
        [],
        |r| r.get::<_, i64>(0),
    )
    .unwrap() as u64
}

#[test]
fn every_hit_of_a_session_is_in_the_index_soon_after_go_exits() {
    let sb = Sandbox::with_template();
    run_ok(sb.go(["build", "std"]));
    run_ok(sb.gocache(["scan"]));
    let hits = || index_hits(&sb);
    let before = hits();
    run_ok(with_prog(sb.go(["build", "std"])));
    let (gets, session_hits, _, _) = last_session(&sb);
    assert!(gets > 300 && session_hits == gets);
    // The session's row is there when go exits; the last uses are recorded
    // just after (the server no longer holds go up for them). Each hit is
    // a use of its action and of its output.
    settle(|| hits() == before + 2 * session_hits);
    assert_eq!(hits(), before + 2 * session_hits);
}

/// An action entry of the template cache, as a get finds it.
struct Cached {
    action: [u8; 32],
    /// `<hex>-a`, the action entry's file name.
    action_name: String,
    /// `<hex>-d`, its output's file name.
    output_name: String,
    size: u64,
}

/// The first `n` action entries of `cache` whose output is there, each
/// naming a different output.
fn cached_actions(cache: &std::path::Path, n: usize) -> Vec<Cached> {
    let unhex = |h: &str| -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, v) in b.iter_mut().enumerate() {
            *v = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap();
        }
        b
    };
    let mut found = Vec::new();
    for name in outputs(cache) {
        if found.len() == n {
            break;
        }
        let Some(hex) = name.strip_suffix("-a") else {
            continue;
        };
        let text = std::fs::read_to_string(cache.join(&hex[..2]).join(&name)).unwrap();
        let fields: Vec<&str> = text.split_whitespace().collect();
        let output_name = format!("{}-d", fields[2]);
        if !cache.join(&fields[2][..2]).join(&output_name).exists()
            || found.iter().any(|c: &Cached| c.output_name == output_name)
        {
            continue;
        }
        found.push(Cached {
            action: unhex(hex),
            action_name: name.clone(),
            output_name,
            size: fields[3].parse().unwrap(),
        });
    }
    assert_eq!(
        found.len(),
        n,
        "too few action entries in {}",
        cache.display()
    );
    found
}

/// Each name's recorded uses, as (hits, last use): in the entries the
/// index knows, or waiting for a scan to find them.
fn recorded_uses(sb: &Sandbox, name: &str) -> Option<(u64, i64)> {
    let conn = rusqlite::Connection::open(sb.index()).unwrap();
    conn.query_row(
        "SELECT hits, last_use FROM entries WHERE name = ?1
         UNION ALL SELECT hits, last_use FROM pending_uses WHERE name = ?1",
        [name],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)?)),
    )
    .ok()
}

/// A line of `gocache prog --trace`: microseconds since the start, the
/// event, the request ID.
type TraceEvent = (u64, String, i64);

/// Runs `gocache prog ARGS` on the sandbox's cache with the whole of
/// `requests` written at once, before its first answer is read (go waits
/// for that answer; a test need not); returns the responses by ID and the
/// trace it wrote.
fn prog_at_once(
    sb: &Sandbox,
    args: &[&str],
    requests: String,
) -> (std::collections::BTreeMap<u64, Value>, Vec<TraceEvent>) {
    let trace = sb.root().join(format!("trace-{}.txt", requests.len()));
    let mut cmd = sb.gocache(["prog", "--trace", trace.to_str().unwrap()]);
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(requests.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let responses = out
        .stdout
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: Value = serde_json::from_slice(l).unwrap();
            (v["ID"].as_u64().unwrap(), v)
        })
        .collect();
    let events = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (
                f[0].parse().unwrap(),
                f[1].to_string(),
                f[2].parse().unwrap(),
            )
        })
        .collect();
    (responses, events)
}

#[test]
fn the_first_requests_are_counted_though_the_index_opens_after_them() {
    // No index yet: the server creates it on its bookkeeping thread, while
    // the reader answers the requests already waiting.
    let sb = Sandbox::with_template();
    assert!(!sb.index().exists());
    let hits = cached_actions(&sb.cache(), 5);
    let mut requests = String::new();
    for (i, c) in hits.iter().enumerate() {
        requests += &get_request(1 + i as u64, &c.action);
    }
    let body = b"a fresh output";
    let fresh = [0x5au8; 32];
    requests += &put_request(6, &fresh, body);
    requests += &get_request(7, &fresh);
    requests += "{\"ID\":8,\"Command\":\"close\"}\n";
    let (responses, events) = prog_at_once(&sb, &["--workers", "0"], requests);

    assert_eq!(responses.len(), 9, "{responses:?}");
    for (i, c) in hits.iter().enumerate() {
        let r = &responses[&(1 + i as u64)];
        assert!(r["OutputID"].is_string(), "{r}");
        assert_eq!(r["Size"].as_u64().unwrap_or(0), c.size, "{r}");
    }
    assert!(responses[&6]["Err"].is_null(), "{}", responses[&6]);
    assert_eq!(responses[&7]["Size"], body.len());
    // The timeline shows what this test is about: the first get was
    // answered before the index was open.
    let at = |what: &str, id: i64| {
        events
            .iter()
            .find(|(_, w, i)| w == what && *i == id)
            .unwrap_or_else(|| panic!("no {what} {id} in {events:?}"))
            .0
    };
    assert!(at("get", 1) < at("index-open", 0), "{events:?}");

    // Every use is in the index once the server has exited: each hit
    // counts once for its action entry and once for its output, the put
    // and its hit too.
    for c in &hits {
        for name in [&c.action_name, &c.output_name] {
            assert_eq!(recorded_uses(&sb, name).map(|u| u.0), Some(1), "{name}");
        }
    }
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let fresh_output = recorded_uses(&sb, &format!("{}-d", hex(&sha256(body))));
    assert_eq!(fresh_output.map(|u| u.0), Some(1));
    assert!(fresh_output.unwrap().1 > 1_700_000_000);
    assert_eq!(last_session(&sb), (6, 6, 0, 1));
    // And the index is whole in its file: the server checkpointed its
    // write-ahead log when it closed it.
    let wal = sb.cache().join("gocache/index.sqlite-wal");
    assert_eq!(std::fs::metadata(&wal).map_or(0, |m| m.len()), 0);
}

#[test]
fn gets_answered_by_a_pool_while_requests_wait_are_all_answered_and_counted() {
    // 40 gets at once: the reader hands those with more waiting behind
    // them to two workers, and polls for the next request before sleeping.
    let sb = Sandbox::with_template();
    let hits = cached_actions(&sb.cache(), 20);
    let mut requests = String::new();
    for i in 0..40u64 {
        requests += &match hits.get(i as usize / 2).filter(|_| i % 2 == 0) {
            Some(c) => get_request(1 + i, &c.action),
            None => get_request(
                1 + i,
                &[0xee, i as u8, 0x77, 0x11].repeat(8).try_into().unwrap(),
            ),
        };
    }
    requests += "{\"ID\":41,\"Command\":\"close\"}\n";
    let args = ["--workers", "2", "--spin-us", "200"];
    let (responses, events) = prog_at_once(&sb, &args, requests);
    assert_eq!(responses.len(), 42, "{responses:?}");
    for i in 0..40u64 {
        let r = &responses[&(1 + i)];
        if i % 2 == 0 {
            let c = &hits[i as usize / 2];
            assert!(r["OutputID"].is_string(), "{r}");
            assert_eq!(r["Size"].as_u64().unwrap_or(0), c.size, "{r}");
            let path = sb.cache().join(&c.output_name[..2]).join(&c.output_name);
            assert_eq!(r["DiskPath"], path.to_str().unwrap());
        } else {
            assert_eq!(r["Miss"], true, "{r}");
        }
    }
    let pooled = events.iter().filter(|(_, w, _)| w == "get-pool").count();
    assert!(pooled > 0, "no get went to the pool: {events:?}");
    for c in &hits {
        for name in [&c.action_name, &c.output_name] {
            assert_eq!(recorded_uses(&sb, name).map(|u| u.0), Some(1), "{name}");
        }
    }
    assert_eq!(last_session(&sb), (40, 20, 20, 0));
}

#[test]
fn a_warm_build_served_by_workers_is_all_hits_and_every_hit_is_recorded() {
    // The default on two CPUs answers every get on the reader; here the
    // pool and the polling reader serve a real, parallel build.
    let sb = Sandbox::with_template();
    run_ok(sb.go(["build", "std"]));
    run_ok(sb.gocache(["scan"]));
    let hits = || index_hits(&sb);
    let before = hits();
    let mut go = sb.go(["build", "-p=8", "std"]);
    go.env(
        "GOCACHEPROG",
        format!("{} prog --workers 3 --spin-us 50", gocache_bin().display()),
    );
    let out = run_ok(go);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (gets, session_hits, _, puts) = last_session(&sb);
    assert!(
        gets > 300 && session_hits == gets && puts == 0,
        "{gets} gets, {session_hits} hits, {puts} puts"
    );
    settle(|| hits() == before + 2 * session_hits);
    assert_eq!(hits(), before + 2 * session_hits);
}

#[test]
fn without_a_usable_index_file_prog_serves_the_build_from_a_walk_and_says_so_once() {
    // The index's path is a directory: SQLite cannot open it.
    let sb = Sandbox::with_template();
    std::fs::create_dir_all(sb.index()).unwrap();
    let dir = sb.write_hello("noindex", "no index");
    let mut go = with_prog(sb.go(["build", "-o", "hello", "."]));
    go.current_dir(&dir);
    let out = run_ok(go);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("gocache prog: warning: ").count(), 1, "{err}");
    // As trim and the hook do: an in-memory copy, so the limits still hold.
    assert!(
        err.contains("the index cannot be used")
            && err.contains("working from a direct walk of the cache instead"),
        "{err}"
    );
    let hello = Command::new(dir.join("hello")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&hello.stdout), "no index\n");
    assert!(sb.index().is_dir());
}

/// Cache subdirectories made unwritable, for root too (immutable, with
/// chattr, where the file system allows it); made writable again on drop.
struct ReadOnlyDirs(Vec<std::path::PathBuf>);

impl ReadOnlyDirs {
    /// None where this user cannot make a directory it may not write.
    fn new(dirs: Vec<std::path::PathBuf>) -> Option<ReadOnlyDirs> {
        use std::os::unix::fs::PermissionsExt;
        for d in &dirs {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        let ro = ReadOnlyDirs(dirs);
        let writable = |d: &std::path::Path| {
            let probe = d.join("probe");
            let ok = std::fs::write(&probe, b"").is_ok();
            let _ = std::fs::remove_file(probe);
            ok
        };
        if writable(&ro.0[0]) {
            // root: only the immutable flag stops it.
            let chattr = Command::new("chattr").arg("+i").args(&ro.0).status();
            if !chattr.is_ok_and(|s| s.success()) || writable(&ro.0[0]) {
                return None;
            }
        }
        Some(ro)
    }
}

impl Drop for ReadOnlyDirs {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = Command::new("chattr")
            .arg("-i")
            .args(&self.0)
            .stderr(Stdio::null())
            .status();
        for d in &self.0 {
            let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755));
        }
    }
}

#[test]
fn a_put_into_a_read_only_subdirectory_is_handed_over_from_inside_the_cache_and_the_build_succeeds()
{
    let sb = Sandbox::with_template();
    let dirs = (0x80..=0xffu8)
        .map(|s| sb.cache().join(format!("{s:02x}")))
        .collect();
    let Some(_read_only) = ReadOnlyDirs::new(dirs) else {
        eprintln!("skipped: this user cannot make a directory it may not write");
        return;
    };
    let (mut child, mut out) = spawn_prog(&sb);
    let mut stdin = child.stdin.take().unwrap();
    let body_in = |low: bool| {
        (0u32..)
            .map(|i| format!("body {i}").into_bytes())
            .find(|b| (sha256(b)[0] < 0x80) == low)
            .unwrap()
    };
    let (bad, good) = (body_in(false), body_in(true));
    // The output's subdirectory is read-only, then the action entry's.
    let cases = [
        (1, [0x11u8; 32], &bad, format!("{:02x}", sha256(&bad)[0])),
        (2, [0x99u8; 32], &good, "99".to_string()),
    ];
    // Neither fails: go is told where to read what it put, inside the
    // cache (the output from a temporary file in a writable subdirectory;
    // in place when only the action entry could not be written).
    let mut kept = Vec::new();
    for (id, action, body, sub) in &cases {
        stdin
            .write_all(put_request(*id, action, body).as_bytes())
            .unwrap();
        stdin.flush().unwrap();
        let r = read_response(&mut out);
        assert_eq!(r["ID"], *id);
        assert!(r["Err"].is_null(), "{r}");
        let path = std::path::PathBuf::from(r["DiskPath"].as_str().unwrap());
        assert!(path.starts_with(sb.cache()), "{r}");
        assert_eq!(std::fs::read(&path).unwrap(), **body, "{r}");
        if *id == 1 {
            assert!(!path.starts_with(sb.cache().join(sub)), "{r}");
            kept.push(path);
        }
    }
    // Later requests are served: a put that fits, then its hit.
    let action = [0x22u8; 32];
    stdin
        .write_all((put_request(3, &action, &good) + &get_request(4, &action)).as_bytes())
        .unwrap();
    stdin.flush().unwrap();
    let (a, b) = (read_response(&mut out), read_response(&mut out));
    assert!(a["Err"].is_null() && b["Err"].is_null(), "{a} {b}");
    let hit = if a["ID"] == 4 { a } else { b };
    assert_eq!(hit["Size"], good.len() as u64, "{hit}");
    close_prog(child, stdin, &mut out, 5);
    assert_eq!(last_session_errors(&sb), 0);
    assert!(kept.iter().all(|p| !p.exists()), "left behind: {kept:?}");

    // The real go command, module index on (it treats a failed put as
    // fatal): the build succeeds, with one warning.
    let dir = sb.write_hello("readonly", "read only");
    let mut go = with_prog(sb.go(["build", "-gcflags=all=-N", "-o", "hello", "."]));
    go.current_dir(&dir);
    let out = run_ok(go);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("gocache prog: warning: ").count(), 1, "{err}");
    let (_, _, misses, puts) = last_session(&sb);
    assert!(misses > 20 && puts > 10, "{misses} misses, {puts} puts");
    assert_eq!(last_session_errors(&sb), 0);
    assert!(files_and_temps(&sb.cache()).1.is_empty());
    let hello = Command::new(dir.join("hello")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&hello.stdout), "read only\n");
}

/// `gocache prog` records every get (hit or miss) and put as a
/// trace event, with the rebuild time between a miss and its put, and
/// `gocache trace export` gives them back: as many of each as the
/// session's own counters say, and a cost on the puts that followed a miss.
/// `GOCACHE_TRACE=off` records none.
#[test]
fn prog_records_each_get_and_put_in_the_trace_with_rebuild_times() {
    let sb = Sandbox::with_template();
    let dir = sb.write_main(
        "traced",
        "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"traced\") }\n",
    );
    let export = |sb: &Sandbox| -> Vec<Value> {
        let out = run_ok(sb.gocache(["trace", "export"]));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|v: &Value| v.get("ev").is_some())
            .collect()
    };
    let (mut gets, mut hits, mut misses, mut puts) = (0, 0, 0, 0);
    for _ in 0..2 {
        run_ok(with_prog(sb.go(["build", "-o", "/dev/null", "."])).current_dir(&dir));
        let (g, h, m, p) = last_session(&sb);
        (gets, hits, misses, puts) = (gets + g, hits + h, misses + m, puts + p);
    }
    assert!(
        misses > 0 && puts > 0 && hits > 0,
        "{gets} {hits} {misses} {puts}"
    );
    let events = export(&sb);
    let n = |ev: &str, hit: Option<bool>| {
        events
            .iter()
            .filter(|v| v["ev"] == ev && hit.is_none_or(|h| v["hit"] == h))
            .count() as u64
    };
    assert_eq!(n("get", Some(false)), misses, "a miss event per miss");
    assert_eq!(n("get", Some(true)), hits, "a hit event per hit");
    assert_eq!(n("put", None), puts, "a put event per put");
    // Each put of this build followed its miss: a rebuild time, in
    // seconds, and never a negative one.
    let costs: Vec<f64> = events
        .iter()
        .filter(|v| v["ev"] == "put")
        .filter_map(|v| v["cost"].as_f64())
        .collect();
    assert!(!costs.is_empty(), "{events:?}");
    assert!(costs.iter().all(|c| (0.0..600.0).contains(c)), "{costs:?}");

    let before = events.len();
    run_ok(
        with_prog(sb.go(["build", "-o", "/dev/null", "."]))
            .current_dir(&dir)
            .env("GOCACHE_TRACE", "off"),
    );
    assert_eq!(export(&sb).len(), before, "GOCACHE_TRACE=off records none");
}

/// A bad `GOCACHE_TRACE` costs one warning that says
/// what prog does (records with the default bound, as the hook does), and
/// it comes at the start: before go's own messages of the build.
#[test]
fn a_bad_gocache_trace_is_one_early_warning_and_events_are_recorded_with_the_default_bound() {
    let sb = Sandbox::with_template();
    let dir = sb.write_main("badtrace", "package main\n\nfunc main() { undefined() }\n");
    let out = run_expecting(
        with_prog(sb.go(["build", "-o", "/dev/null", "."]))
            .current_dir(&dir)
            .env("GOCACHE_TRACE", "abc"),
        1,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("gocache prog: warning: ").count(), 1, "{err}");
    assert!(err.contains("GOCACHE_TRACE=\"abc\""), "{err}");
    assert!(err.contains("recording with the default bound"), "{err}");
    assert!(!err.contains("recording no trace"), "{err}");
    let warned = err.find("gocache prog: warning").unwrap();
    let go_said = err.find("undefined").expect("go's compile error");
    assert!(
        warned < go_said,
        "the warning came after go's messages: {err}"
    );
    // And what it says holds: the session's gets are in the trace.
    let conn = rusqlite::Connection::open(sb.index()).unwrap();
    let events: i64 = conn
        .query_row("SELECT count(*) FROM trace", [], |r| r.get(0))
        .unwrap();
    assert!(events > 0, "no trace events recorded");
}

#[test]
fn prog_trims_by_the_stored_cost_aware_policy_with_measured_costs() {
    let sb = Sandbox::with_template();
    backdate(&sb.cache(), Duration::from_secs(3 * 3600));
    let budget: u64 = 100 << 20;
    run_ok(
        sb.gocache(["limits", "--policy", "gd-cost", "--budget"])
            .arg(budget.to_string()),
    );
    // As with lru: a fresh build of net/http while the template's std
    // (old) may go, now by priority.
    run_ok(with_prog(sb.go(["build", "-gcflags=all=-N", "net/http"])));
    let s: Value = serde_json::from_slice(&run_ok(sb.gocache(["stats", "--json"])).stdout).unwrap();
    let total = s["total"]["allocated_bytes"].as_u64().unwrap();
    assert!(total <= budget, "cache {total} over budget {budget}");
    // The trims recorded their clock; the trace has the costs they read.
    let conn = rusqlite::Connection::open(sb.index()).unwrap();
    let clock: String = conn
        .query_row("SELECT value FROM meta WHERE key = 'gdsf_clock'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let clock: Vec<(i64, f64)> = serde_json::from_str(&clock).unwrap();
    assert!(
        !clock.is_empty() && clock.iter().all(|&(_, l)| l > 0.0),
        "{clock:?}"
    );
    let measured: i64 = conn
        .query_row(
            "SELECT count(*) FROM trace WHERE cost IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(measured > 30, "{measured}");
    // What prog stored is all there and usable.
    run_ok(with_prog(sb.go(["build", "-gcflags=all=-N", "net/http"])));
    let (gets, hits, _, _) = last_session(&sb);
    assert_eq!(hits, gets);
}

/// One full-disk trial, as root in its own mount namespace: a tmpfs as
/// large as the cache and 24 MiB more, the cache copied in with every
/// entry 3 days old, the rest filled to 0 bytes free, then
/// `GOCACHEPROG="gocache prog" go build -a ./...` with a 50 MiB budget.
/// Writes what happened under `$R`; exits 77 where it cannot mount.
/// `scripts/chaos.sh` runs the same steps.
pub const FULL_DISK_TRIAL: &str = r#"
    set -u
    mount -t tmpfs -o size=$((SIZE / 1048576 + 24))m tmpfs "$MNT" || exit 77
    C="$MNT/cache"
    cp -a "$TEMPLATE" "$C"
    find "$C" -exec touch -h -d '3 days ago' {} +
    "$G" --cache-dir "$C" scan -q
    dd if=/dev/zero of="$MNT/filler" bs=64K 2>/dev/null
    echo x > "$MNT/probe" 2>/dev/null && echo "not full" > "$R/full" || : > "$R/full"
    find "$C" -name '*-[ad]' | wc -l > "$R/before"
    cd "$MOD"
    GOCACHE="$C" GOCACHE_BUDGET=50MiB GOCACHEPROG="$G prog" go build -a ./... > "$R/go.out" 2>&1
    echo $? > "$R/go.rc"
    find "$C" -name '*-[ad]' | wc -l > "$R/after"
    find "$C" -name '.gocache-tmp-*' | wc -l > "$R/temps"
    du -s -B1 "$C" | cut -f1 > "$R/du"
"#;

/// On a full disk, `gocache prog` evicts (from a walk
/// when its index cannot be written) before the puts that need the room,
/// and the go command builds; one warning says what happened.
#[test]
fn on_a_full_disk_prog_evicts_and_go_build_a_passes_with_one_warning() {
    let sb = Sandbox::new();
    let works = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "true"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        works || std::env::var_os("GOCACHE_TEST_NO_NAMESPACES").is_some(),
        "no user and mount namespaces here: set GOCACHE_TEST_NO_NAMESPACES=1 to skip this test"
    );
    if !works {
        eprintln!("SKIPPED: no user and mount namespaces here");
        return;
    }
    let template = template_cache();
    let size = du(template);
    assert!(size > 80 << 20, "the template cache is too small: {size}");
    let mnt = sb.root().join("small");
    let report = sb.root().join("report");
    std::fs::create_dir_all(&mnt).unwrap();
    std::fs::create_dir_all(&report).unwrap();
    let module = sb.write_main("fulldisk", "package main\n\nfunc main() {}\n");
    let mut unshare = Command::new("unshare");
    for (k, v) in sb.env() {
        unshare.env(k, v);
    }
    let status = unshare
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(FULL_DISK_TRIAL)
        .env("SIZE", size.to_string())
        .env("MNT", &mnt)
        .env("R", &report)
        .env("MOD", &module)
        .env("TEMPLATE", template)
        .env("G", gocache_bin())
        .status()
        .unwrap();
    if status.code() == Some(77) {
        assert!(
            std::env::var_os("GOCACHE_TEST_NO_NAMESPACES").is_some(),
            "cannot mount a tmpfs here: set GOCACHE_TEST_NO_NAMESPACES=1 to skip this test"
        );
        eprintln!("SKIPPED: cannot mount a tmpfs here");
        return;
    }
    let read = |f: &str| std::fs::read_to_string(report.join(f)).unwrap_or_default();
    let num = |f: &str| read(f).trim().parse::<u64>().unwrap();
    assert_eq!(read("full"), "", "the disk was not full");
    let out = read("go.out");
    assert_eq!(read("go.rc").trim(), "0", "{out}");
    assert!(num("after") < num("before"), "nothing evicted: {out}");
    assert!(num("du") <= 50 << 20, "du {} over the budget", num("du"));
    assert_eq!(num("temps"), 0, "temporary files left");
    assert!(
        out.matches("gocache prog: warning").count() <= 1,
        "one fault, one warning: {out}"
    );
}

/// Every entry the index knows with its mtime there and on disk (`lstat`),
/// where the two differ.
fn mtimes_index_and_disk_disagree(sb: &Sandbox) -> Vec<(String, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let conn = rusqlite::Connection::open(sb.index()).unwrap();
    let mut stmt = conn
        .prepare("SELECT printf('%02x', subdir), name, mtime FROM entries")
        .unwrap();
    let rows: Vec<(String, String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(rows.len() > 300, "the index knows the cache");
    rows.into_iter()
        .filter_map(|(sub, name, indexed)| {
            let md = std::fs::symlink_metadata(sb.cache().join(&sub).join(&name)).ok()?;
            (md.mtime() != indexed).then(|| (format!("{sub}/{name}"), indexed, md.mtime()))
        })
        .collect()
}

#[test]
fn a_hit_of_an_hour_old_entry_moves_its_mtime_on_disk_and_in_the_index_alike() {
    // The executor of a trim keeps a victim whose mtime on disk is newer
    // than the index's (go used it since the plan): prog's own marks must
    // not look like that, or every entry hit since it was stored is kept
    // by the first round of every trim and something else goes instead.
    let sb = Sandbox::with_template();
    backdate(&sb.cache(), Duration::from_secs(2 * 3600));
    run_ok(sb.gocache(["scan"]));
    assert_eq!(mtimes_index_and_disk_disagree(&sb), vec![]);
    run_ok(with_prog(sb.go(["build", "fmt"])));
    let (gets, hits, _, _) = last_session(&sb);
    assert!(gets > 20 && hits == gets, "{gets} {hits}");
    // go's hits marked their entries (an hour old or more: the mtime
    // becomes now, as go marks them); the uses reach the index just after
    // go exits.
    settle(|| mtimes_index_and_disk_disagree(&sb).is_empty());
    assert_eq!(
        mtimes_index_and_disk_disagree(&sb),
        vec![],
        "(entry, index mtime, disk mtime)"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let conn = rusqlite::Connection::open(sb.index()).unwrap();
    let recent = || -> i64 {
        conn.query_row(
            "SELECT count(*) FROM entries WHERE mtime > ?1",
            [now - 600],
            |r| r.get(0),
        )
        .unwrap()
    };
    let marked = recent();
    // Each hit marked its action entry and its output (outputs may be
    // shared: the empty compiler output of many actions).
    assert!(
        (hits..=2 * hits).contains(&(marked as u64)),
        "{marked} entries marked by {hits} hits"
    );
    // The other side of Go's hour: the same build at once hits the same
    // entries, now under an hour old, and moves no mtime, on disk or in
    // the index, once its uses are in.
    let before = index_hits(&sb);
    run_ok(with_prog(sb.go(["build", "fmt"])));
    let (gets, again, _, _) = last_session(&sb);
    assert!(gets == hits && again == hits, "{gets} {again}");
    settle(|| index_hits(&sb) == before + 2 * again);
    assert_eq!(index_hits(&sb), before + 2 * again);
    assert_eq!(mtimes_index_and_disk_disagree(&sb), vec![]);
    assert_eq!(recent(), marked, "no mtime moved within the hour");
}
