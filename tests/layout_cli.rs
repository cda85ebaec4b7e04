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

/// Each piece of bad input a newcomer tried, with the
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

/// "Permission denied (os error 13): Permission denied
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

/// `GOCACHE=~/src/hello gocache trim -n` took a Go
/// project for a cache, wrote `hello/gocache/index.sqlite` into it, and
/// `stats` listed go.mod and main.go as odd items. Every command refuses
/// (exit 2, saying what it found) and writes nothing.
#[test]
fn a_directory_that_is_not_a_go_cache_is_refused_and_left_untouched() {
    let sb = Sandbox::new();
    let project = sb.write_hello("hello", "hi");
    let before = walk_names(&project);
    for cmd in [
        &["trim", "-n"][..],
        &["trim"],
        &["stats"],
        &["scan"],
        &["limits"],
        &["limits", "--budget", "1G"],
        &["hook"],
        &["prog"],
    ] {
        let out = sb
            .gocache(cmd)
            .env("GOCACHE", &project)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {err}");
        assert!(
            err.contains("does not look like a Go build cache")
                && err.contains("it holds go.mod, main.go")
                && err.contains("no README from Go")
                && err.contains("none of the subdirectories 00..ff"),
            "{cmd:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{cmd:?}: {err}");
        assert_eq!(walk_names(&project), before, "{cmd:?} wrote into it");
    }
    // A README that is not Go's is no marker; the same with --cache-dir.
    std::fs::write(project.join("README"), "# hello\n").unwrap();
    let out = sb
        .gocache(["--cache-dir"])
        .arg(&project)
        .arg("stats")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("a README that is not Go's"),
        "{}",
        stderr_of(&out)
    );
    assert!(!project.join("gocache").exists());
}

/// What a Go cache looks like to gocache: Go's README, or its 256
/// subdirectories (with odd items beside them, reported as ever), or
/// nothing but Go's and gocache's own names (an empty directory).
#[test]
fn a_go_cache_is_recognised_by_its_readme_its_subdirectories_or_emptiness() {
    let sb = Sandbox::with_template();
    // A real cache, with something odd beside Go's files.
    std::fs::write(sb.cache().join("notes.txt"), "mine").unwrap();
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    assert_eq!(s["other"]["odd_items"][0]["path"], "notes.txt");
    // Without its README: the subdirectories say it.
    std::fs::remove_file(sb.cache().join("README")).unwrap();
    run_ok(sb.gocache(["trim", "-n"]));
    // Without a subdirectory either: refused, saying how many there are.
    std::fs::remove_dir_all(sb.cache().join("7f")).unwrap();
    let out = sb.gocache(["trim", "-n"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("it holds notes.txt, no README from Go and 255 of the 256"),
        "{}",
        stderr_of(&out)
    );
    // What the message advises: a go build sets the cache up again.
    run_ok(sb.go(["build", "fmt"]));
    assert!(sb.cache().join("README").exists() && sb.cache().join("7f").is_dir());
    run_ok(sb.gocache(["trim", "-n"]));
    // `go clean -cache` leaves Go's README: still a cache.
    run_ok(sb.go(["clean", "-cache"]));
    assert!(!sb.cache().join("00").exists());
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    assert_eq!(s["total"]["entries"], 0);

    // An empty directory is a cache Go has not filled yet.
    let empty = Sandbox::new();
    std::fs::create_dir(empty.cache()).unwrap();
    let s = json(&run_ok(empty.gocache(["stats", "--json"])));
    assert_eq!(s["total"]["entries"], 0);
    assert!(empty.index().exists());
    // ... and one holding only gocache's directory and Go's trim.txt.
    std::fs::write(empty.cache().join("trim.txt"), "1700000000").unwrap();
    run_ok(empty.gocache(["trim"]));
}

/// `--index /nonexistent/dir/x.sqlite` created the
/// directories. An index named with --index or GOCACHE_INDEX goes only
/// into a directory that exists.
#[test]
fn the_directory_of_an_index_given_by_flag_or_environment_is_never_created() {
    let sb = Sandbox::with_template();
    let missing = sb.root().join("nonexistent/dir/x.sqlite");
    for how in ["flag", "env"] {
        for cmd in ["stats", "trim", "limits", "scan"] {
            let mut c = sb.gocache::<[&str; 0], &str>([]);
            match how {
                "flag" => c.arg("--index").arg(&missing),
                _ => c.env("GOCACHE_INDEX", &missing),
            };
            let out = c.arg(cmd).output().unwrap();
            let err = stderr_of(&out);
            assert_eq!(out.status.code(), Some(2), "{how} {cmd}: {err}");
            assert!(
                err.contains("creates no directory for an index")
                    && err.contains("No such file or directory"),
                "{how} {cmd}: {err}"
            );
        }
    }
    assert!(!sb.root().join("nonexistent").exists());
    // In a directory that exists, the index file is created.
    let there = sb.root().join("x.sqlite");
    run_ok(sb.gocache(["--index"]).arg(&there).arg("scan"));
    assert!(there.exists());
}

/// `gocache prog` on its own, on a cache nobody created yet, sets it up as
/// go would (README, 00..ff), so that every other command recognises it.
#[test]
fn prog_on_a_missing_cache_sets_it_up_as_go_does() {
    use std::io::{BufRead, BufReader, Write};
    let sb = Sandbox::new();
    let mut child = sb
        .gocache(["prog"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut hello = String::new();
    out.read_line(&mut hello).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"{\"ID\":1,\"Command\":\"close\"}\n")
        .unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success());
    let readme = std::fs::read_to_string(sb.cache().join("README")).unwrap();
    assert_eq!(readme, gocache::cachedir::GO_README);
    for s in 0..256 {
        assert!(sb.cache().join(format!("{s:02x}")).is_dir(), "{s:02x}");
    }
    run_ok(sb.gocache(["trim", "-n"]));
}

/// The wrapper's hook after the first go command on a cache that did not
/// exist yet: go creates the cache, and the hook indexes what it built.
#[test]
fn the_first_wrapped_go_command_creates_the_cache_and_the_hook_indexes_it() {
    let sb = Sandbox::new();
    // No imports: the cold build is the runtime's only.
    let dir = sb.write_main("first", "package main\n\nfunc main() {}\n");
    // `go version` opens no cache: nothing to create, nothing to say.
    let out = run_ok(sb.gocache(["go", "version"]).current_dir(&dir));
    assert!(out.stderr.is_empty(), "{}", stderr_of(&out));
    assert!(!sb.cache().exists());
    let out = run_ok(
        sb.gocache(["go", "build", "-o", "/dev/null", "."])
            .current_dir(&dir),
    );
    assert!(out.stderr.is_empty(), "{}", stderr_of(&out));
    assert!(sb.index().exists(), "the hook indexed the new cache");
    let s = json(&run_ok(sb.gocache(["stats", "--json", "--no-sync"])));
    assert!(s["total"]["entries"].as_u64().unwrap() > 10, "{s:#}");
}

/// Every name under `dir`, recursively (to see that nothing was written).
fn walk_names(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.display().to_string());
        if p.is_dir() {
            out.extend(walk_names(&p));
        }
    }
    out.sort();
    out
}

/// `gocache --cache-dir X go ...` runs go on X: the cache gocache manages
/// is the one go builds into (`go env GOCACHE` says X), and the hook
/// counts the run there.
#[test]
fn the_wrappers_cache_dir_is_the_cache_go_uses() {
    let sb = Sandbox::with_template();
    let other = sb.root().join("other-cache");
    let out = run_ok(
        sb.gocache(["--cache-dir"])
            .arg(&other)
            .args(["go", "env", "GOCACHE"]),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        other.display().to_string()
    );
    let programs = |cache: &std::path::Path| -> Vec<String> {
        let s = json(&run_ok(
            sb.gocache(["--cache-dir"])
                .arg(cache)
                .args(["stats", "--json"]),
        ));
        s["most_used_exes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["program"].as_str().unwrap().to_string())
            .collect()
    };
    let before = walk_names(&sb.cache());
    let dir = sb.write_hello("elsewhere", "built elsewhere");
    // Relative, as every --cache-dir may be: from the current directory.
    let out = run_ok(
        sb.gocache(["--cache-dir", "../../other-cache", "go", "run", "."])
            .current_dir(&dir),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "built elsewhere\n");
    assert!(other.join("README").is_file(), "go set up the cache");
    assert_eq!(programs(&other), ["elsewhere"]);
    let s = json(&run_ok(
        sb.gocache(["--cache-dir"])
            .arg(&other)
            .args(["stats", "--json"]),
    ));
    assert_eq!(s["most_used_exes"][0]["hits"], 1, "{s:#}");
    // $GOCACHE's cache was not touched.
    assert_eq!(walk_names(&sb.cache()), before);
}

/// `gocache prog` cannot choose the go command's cache: started by a go
/// whose cache is another directory than its --cache-dir, it refuses
/// (exit 2, naming both and what to do) and writes nothing; with the same
/// directory it serves.
#[test]
fn prog_refuses_a_cache_dir_other_than_the_go_commands() {
    let sb = Sandbox::new();
    let dir = sb.write_main("progged", "package main\n\nfunc main() {}\n");
    let other = sb.root().join("other-cache");
    let prog = |cache: &std::path::Path| {
        format!(
            "{} --cache-dir {} prog",
            gocache_bin().display(),
            cache.display()
        )
    };
    let out = sb
        .go(["build", "-o", "/dev/null", "."])
        .current_dir(&dir)
        .env("GOCACHEPROG", prog(&other))
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert!(!out.status.success(), "{err}");
    for needle in [
        format!("--cache-dir {}", other.display()),
        sb.cache().display().to_string(),
        format!("GOCACHE={}", other.display()),
    ] {
        assert!(err.contains(&needle), "{needle:?} not in {err}");
    }
    assert!(!other.exists(), "nothing written to {}", other.display());
    // Standing alone (no go command), the same refusal, exit 2.
    let out = sb
        .gocache(["--cache-dir"])
        .arg(&other)
        .arg("prog")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    // The go command's own cache, named: served.
    run_ok(
        sb.go(["build", "-o", "/dev/null", "."])
            .current_dir(&dir)
            .env("GOCACHEPROG", prog(&sb.cache())),
    );
    assert!(sb.index().exists());
}
