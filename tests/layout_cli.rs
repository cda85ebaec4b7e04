//! Finding the cache, and the errors a user meets before anything runs.

use crate::support::*;

#[test]
fn template_cache_holds_outputs_actions_and_two_executables() {
    let cache = template_cache();
    let mut exe_dirs = 0;
    for sub in 0..256 {
        for e in std::fs::read_dir(cache.join(format!("{sub:02x}"))).unwrap() {
            if e.unwrap().file_type().unwrap().is_dir() {
                exe_dirs += 1;
            }
        }
    }
    assert_eq!(exe_dirs, 2);
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_cache_settings_exit_2_with_a_reason_and_write_nothing() {
    let sb = Sandbox::new();
    let missing = sb.root().join("no-such-cache");
    type Case<'a> = (Vec<(&'a str, String)>, Vec<String>, &'a str);
    let cases: Vec<Case> = vec![
        (vec![("GOCACHE", "off".into())], vec![], "disabled"),
        (vec![("GOCACHE", "relative/dir".into())], vec![], "absolute"),
        (
            vec![("GOCACHE", missing.display().to_string())],
            vec![],
            "does not exist",
        ),
        (
            vec![],
            vec!["--cache-dir".into(), missing.display().to_string()],
            "does not exist",
        ),
        (
            vec![("GOCACHE", "/etc/hostname".into())],
            vec![],
            "not a directory",
        ),
    ];
    for (env, flags, needle) in cases {
        for cmd in ["stats", "scan", "trim"] {
            let mut c = sb.gocache(&flags);
            c.arg(cmd);
            for (k, v) in &env {
                c.env(k, v);
            }
            let out = c.output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(2),
                "{cmd} {env:?} {flags:?}: {}",
                stderr_of(&out)
            );
            assert!(
                stderr_of(&out).contains(needle),
                "{cmd} {env:?}: {}",
                stderr_of(&out)
            );
            assert!(out.stdout.is_empty());
        }
    }
    assert!(!missing.exists(), "gocache must not create a missing cache");
}

#[test]
fn the_go_env_file_is_honoured() {
    let sb = Sandbox::with_template();
    let envfile = sb.root().join("goenv");
    std::fs::write(&envfile, format!("GOCACHE={}\n", sb.cache().display())).unwrap();
    let out = run_ok(
        sb.gocache(["stats", "--json"])
            .env_remove("GOCACHE")
            .env("GOENV", &envfile),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["cache_dir"], sb.cache().display().to_string());
    assert!(v["kinds"]["exe"]["entries"].as_u64().unwrap() == 2);
}

#[test]
fn a_corrupt_or_future_index_does_not_stop_stats() {
    let sb = Sandbox::with_template();
    let good = run_ok(sb.gocache(["stats", "--json"]));
    let good: serde_json::Value = serde_json::from_slice(&good.stdout).unwrap();

    // Garbage bytes where the index should be: only a cache, so it is moved
    // aside (kept for a bug report) and rebuilt, with a warning.
    let garbage = sb.root().join("garbage.sqlite");
    std::fs::write(&garbage, vec![0x5au8; 65536]).unwrap();
    let out = run_ok(
        sb.gocache(["--index"])
            .arg(&garbage)
            .args(["stats", "--json"]),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["index_mode"], "rebuilt", "{}", stderr_of(&out));
    assert_eq!(v["total"], good["total"]);
    assert!(stderr_of(&out).contains("corrupt"), "{}", stderr_of(&out));
    let aside: Vec<_> = std::fs::read_dir(sb.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("garbage.sqlite.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(
        std::fs::read(sb.root().join(&aside[0])).unwrap(),
        vec![0x5au8; 65536]
    );
    let out = run_ok(
        sb.gocache(["--index"])
            .arg(&garbage)
            .args(["stats", "--json"]),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["index_mode"], "read-write");
    assert!(stderr_of(&out).is_empty(), "{}", stderr_of(&out));

    // An index from a newer gocache is left alone.
    let conn = rusqlite::Connection::open(sb.index()).unwrap();
    conn.execute_batch("PRAGMA user_version = 999").unwrap();
    drop(conn);
    let out = run_ok(sb.gocache(["stats", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["index_mode"], "in-memory");
    assert_eq!(v["total"], good["total"]);
    assert!(stderr_of(&out).contains("newer"), "{}", stderr_of(&out));
    // scan, whose job is to write the index, refuses with a hint, exit 1.
    let out = sb.gocache(["scan"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("--index"), "{}", stderr_of(&out));
    let conn = rusqlite::Connection::open(sb.index()).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 999);
}

/// Issue 13, item 11: each piece of bad input a newcomer tried, with the
/// reason the error must give. All exit 2 and change nothing.
#[test]
fn bad_limits_are_refused_with_their_reason_and_change_nothing() {
    let sb = Sandbox::with_template();
    let before = std::fs::read_dir(sb.cache().join("00")).unwrap().count();
    let cases: &[(&[&str], &str)] = &[
        (&["--budget", "-5G"], "sizes cannot be negative"),
        (&["--budget=-5G"], "sizes cannot be negative"),
        (&["--budget", "1e400"], "exponents are not accepted"),
        (&["--budget", "1.5"], "a fraction of a byte"),
        (&["--budget", "0"], "would remove every entry of the cache"),
        (
            &["--exe-quota", "0"],
            "would remove every cached executable",
        ),
        (&["--grace", "off"], "the grace period cannot be \"off\""),
        (&["--grace", "-1h"], "durations cannot be negative"),
        (
            &["--build-max-age", "1mo"],
            "months and years have no fixed length",
        ),
        (
            &["--exe-max-age", "1y"],
            "months and years have no fixed length",
        ),
        (&["--min-free", "1e3"], "exponents are not accepted"),
    ];
    for (flags, needle) in cases {
        for cmd in ["trim", "limits", "hook"] {
            let out = sb.gocache([cmd]).args(*flags).output().unwrap();
            let err = stderr_of(&out);
            assert_eq!(out.status.code(), Some(2), "{cmd} {flags:?}: {err}");
            assert!(err.contains(needle), "{cmd} {flags:?}: {err}");
            assert!(
                !err.contains("unexpected argument"),
                "{cmd} {flags:?}: {err}"
            );
        }
    }
    // Nothing was stored or removed.
    let out = run_ok(sb.gocache(["limits"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("budget          none"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        std::fs::read_dir(sb.cache().join("00")).unwrap().count(),
        before
    );
    // 0B says an empty cache is meant (a dry run here: nothing goes).
    let t = json(&run_ok(
        sb.gocache(["trim", "-n", "--json", "--budget", "0B"]),
    ));
    assert_eq!(t["dry_run"], true);
    run_ok(sb.gocache(["limits", "--exe-quota", "0B"]));
    let out = run_ok(sb.gocache(["limits"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("exe quota       0 B"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Issue 13, item 11: "Permission denied (os error 13): Permission denied
/// (os error 13)". The library's errors printed their cause and also
/// returned it as their source, so `{:#}` printed it twice.
#[test]
fn an_error_message_never_repeats_its_cause() {
    let sb = Sandbox::with_template();
    let file = sb.root().join("a-file");
    std::fs::write(&file, "").unwrap();
    let cases = [
        sb.gocache(["stats"])
            .env("GOCACHE", file.join("cache"))
            .output(),
        sb.gocache(["limits", "--index"])
            .arg(file.join("dir/index.sqlite"))
            .output(),
    ];
    for out in cases {
        let out = out.unwrap();
        let err = stderr_of(&out);
        assert_ne!(out.status.code(), Some(0), "{err}");
        assert_eq!(err.matches("(os error").count(), 1, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}
