//! Every promise at its edge: gocache writes nothing outside
//! the cache through its own paths, a trim breaks no running build
//! whatever the flags, eviction works for every user and on a full disk,
//! CI runs stay exact after a `cp -r` restore, one fault gives one
//! warning, and all of it with every Go minor from 1.24. Real go, real
//! files, and two real users (root and `nobody`) where it takes two.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::support::*;

/// The `gocache: warning:` lines a command printed.
fn warnings(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("warning:"))
        .map(str::to_string)
        .collect()
}

/// Runs `cmd`, expecting exit 0 and exactly one warning containing each
/// of `says`; returns the output.
#[track_caller]
fn one_warning(cmd: &mut Command, says: &[&str]) -> Output {
    let out = run_ok(&mut *cmd);
    let w = warnings(&out);
    assert_eq!(w.len(), 1, "{cmd:?}: one fault, one warning: {w:#?}");
    for s in says {
        assert!(w[0].contains(s), "{cmd:?}: {:?} lacks {s:?}", w[0]);
    }
    out
}

/// Entry names on disk and their mtimes, by a walk independent of
/// gocache.
fn walk(cache: &Path) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for sub in 0..256 {
        let d = cache.join(format!("{sub:02x}"));
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            if name.len() == 66 && (name.ends_with("-a") || name.ends_with("-d")) {
                let m = std::fs::symlink_metadata(e.path()).unwrap();
                out.insert(format!("{sub:02x}/{name}"), m.mtime());
            }
        }
    }
    out
}

/// Sets the mtime of every entry in `names` (files, and executable
/// directories with what is inside) to `when`.
fn set_mtimes<'a>(cache: &Path, names: impl IntoIterator<Item = &'a String>, when: SystemTime) {
    let times = std::fs::FileTimes::new()
        .set_modified(when)
        .set_accessed(when);
    for n in names {
        let p = cache.join(n);
        if p.is_dir() {
            for inner in std::fs::read_dir(&p).unwrap() {
                std::fs::File::open(inner.unwrap().path())
                    .unwrap()
                    .set_times(times)
                    .unwrap();
            }
        }
        std::fs::File::open(&p).unwrap().set_times(times).unwrap();
    }
}

/// Another program's SQLite database (a table of its own, some rows).
fn foreign_db(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
         INSERT INTO notes (body) VALUES ('keep me'), ('and me');",
    )
    .unwrap();
}

/// Every file under `dir` with its bytes and mtime: what a write
/// anywhere there would change.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, i64, i64)> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let m = std::fs::symlink_metadata(&p).unwrap();
        let bytes = if m.is_file() {
            std::fs::read(&p).unwrap()
        } else {
            Vec::new()
        };
        out.insert(p, (bytes, m.mtime(), m.mtime_nsec()));
    }
    out
}

// ---------------------------------------------------------------------------
// 1. gocache's own directory and files, never through a symlink

/// A link where gocache's directory or index belongs,
/// another program's database at the index's place, or a link named with
/// `--index`: every command works from a walk with one warning, and the
/// file or directory outside the cache is not written, not even a `-wal`
/// beside it. Go builds on.
#[test]
fn links_and_foreign_databases_in_gocaches_place_are_never_written() {
    let sb = Sandbox::with_template();
    backdate(&sb.cache(), Duration::from_secs(3 * 3600));
    let outside = sb.root().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let theirs = outside.join("app.db");
    foreign_db(&theirs);
    let own = sb.cache().join("gocache");
    let hello = sb.write_hello("hello", "hello, world");

    enum Setup {
        /// `gocache/index.sqlite` a symlink to their database.
        FileLink,
        /// `gocache/` a symlink to their directory.
        DirLink,
        /// Their database copied to `gocache/index.sqlite`.
        ForeignFile,
        /// `--index` naming a symlink to their database.
        ExplicitLink,
    }
    for setup in [
        Setup::FileLink,
        Setup::DirLink,
        Setup::ForeignFile,
        Setup::ExplicitLink,
    ] {
        let _ = std::fs::remove_dir_all(&own);
        let _ = std::fs::remove_file(&own);
        let mut index_flag: Vec<String> = Vec::new();
        let says: &str;
        match setup {
            Setup::FileLink => {
                std::fs::create_dir(&own).unwrap();
                std::os::unix::fs::symlink(&theirs, own.join("index.sqlite")).unwrap();
                says = "it is a symlink to";
            }
            Setup::DirLink => {
                std::os::unix::fs::symlink(&outside, &own).unwrap();
                says = "its directory";
            }
            Setup::ForeignFile => {
                std::fs::create_dir(&own).unwrap();
                std::fs::copy(&theirs, own.join("index.sqlite")).unwrap();
                says = "tables gocache did not make (notes)";
            }
            Setup::ExplicitLink => {
                let link = sb.root().join("my-index.sqlite");
                let _ = std::fs::remove_file(&link);
                std::os::unix::fs::symlink(&theirs, &link).unwrap();
                index_flag = vec!["--index".into(), link.display().to_string()];
                says = "it is a symlink to";
            }
        }
        let before = snapshot(&outside);
        let in_cache = matches!(setup, Setup::ForeignFile)
            .then(|| std::fs::read(own.join("index.sqlite")).unwrap());
        let gc = |args: &[&str]| {
            let mut c = sb.gocache(&index_flag);
            c.args(args);
            c
        };
        let not_ours = ["is not gocache's index", says];
        one_warning(&mut gc(&["stats"]), &not_ours);
        let budget = (du(&sb.cache()) * 8 / 10).to_string();
        let t = json(&one_warning(
            &mut gc(&["trim", "--json", "--budget", &budget]),
            &not_ours,
        ));
        assert!(t["executed"]["removed"].as_u64().unwrap() > 0, "{t:#}");
        assert!(t["fallback"].as_str().unwrap().contains(says), "{t:#}");
        one_warning(&mut gc(&["hook"]), &not_ours);
        one_warning(&mut gc(&["ci", "begin"]), &not_ours);
        run_ok(sb.go(["build", "-o", "/dev/null", "."]).current_dir(&hello));
        one_warning(&mut gc(&["ci", "end"]), &not_ours);
        let mut wrapped = gc(&["go", "build", "-o", "/dev/null", "."]);
        one_warning(wrapped.current_dir(&hello), &not_ours);
        // `scan`, whose job is to write the index, says why it cannot.
        let out = run_expecting(gc(&["scan"]), 1);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not gocache's index"), "{err}");
        assert!(!err.contains("panicked"), "{err}");

        assert_eq!(
            snapshot(&outside),
            before,
            "nothing written outside the cache"
        );
        if let Some(bytes) = in_cache {
            assert_eq!(std::fs::read(own.join("index.sqlite")).unwrap(), bytes);
            let names: Vec<String> = std::fs::read_dir(&own)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            assert!(
                !names.iter().any(|n| n.starts_with("index.sqlite-")),
                "no WAL beside their file: {names:?}"
            );
        }
    }
    // Their database is still theirs, whole.
    let conn = rusqlite::Connection::open(&theirs).unwrap();
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tables, 1);
    // With the links gone, gocache keeps its index again, marked as its own.
    let _ = std::fs::remove_dir_all(&own);
    let _ = std::fs::remove_file(&own);
    run_ok(sb.gocache(["stats"]));
    let id: i64 = rusqlite::Connection::open(sb.index())
        .unwrap()
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .unwrap();
    assert_eq!(id, 0x6763_6978);
}

// ---------------------------------------------------------------------------
// 2. A running build, whatever --grace says

/// A `-toolexec` program that holds the link step (the last one, after
/// every cache lookup) until the test lets it go: it creates
/// `$GATE/at-link`, then waits for `$GATE/go`.
fn link_gate(dir: &Path) -> PathBuf {
    let script = dir.join("gate.sh");
    std::fs::write(
        &script,
        r#"#!/bin/sh
case "$1" in
*/link)
    case "$*" in
    *-V=full*) ;;
    *)
        : > "$GATE/at-link"
        i=0
        while [ ! -e "$GATE/go" ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i+1)); done
        ;;
    esac
    ;;
esac
exec "$@"
"#,
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// Waits up to `limit` for `path` to exist.
fn wait_for_file(path: &Path, limit: Duration) -> bool {
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Go moves an mtime only when it is an hour old, so a
/// build that looks up entries whose mtimes are 59 minutes old leaves
/// them as they are; seconds later they are over an hour old. A trim and
/// a hook with `--grace 0s` and a budget far below the build's working
/// set, run while the build waits to link, must leave it every path it
/// was handed (the grace period is at least an hour), and still evict
/// what is older.
#[test]
fn a_zero_grace_trim_at_gos_hour_leaves_a_running_build_its_paths() {
    let sb = Sandbox::with_template();
    backdate(&sb.cache(), Duration::from_secs(3 * 3600));
    let prog = sb.write_main(
        "edge",
        "package main\n\nimport (\n\t\"fmt\"\n\t\"strings\"\n)\n\nfunc main() { fmt.Println(strings.ToUpper(\"edge\")) }\n",
    );
    // A first build: what it uses gets a fresh mtime (Go's hour passed).
    let started = SystemTime::now() - Duration::from_secs(2);
    run_ok(sb.go(["build", "-o", "/dev/null", "."]).current_dir(&prog));
    let cache = sb.cache();
    let used: Vec<String> = walk(&cache)
        .into_iter()
        .filter(|(_, m)| {
            *m >= started
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64
        })
        .map(|(n, _)| n)
        .collect();
    assert!(used.len() > 20, "{} entries used", used.len());
    let gate_dir = sb.root().join("gate");
    std::fs::create_dir(&gate_dir).unwrap();
    let gate = link_gate(sb.root());
    // Margins to Go's hour: the build must look everything up before the
    // mtimes are an hour old (else Go moves them, and nothing is tested).
    for margin in [15u64, 90] {
        for f in ["at-link", "go"] {
            let _ = std::fs::remove_file(gate_dir.join(f));
        }
        let mtime = SystemTime::now() - Duration::from_secs(3600 - margin);
        set_mtimes(&cache, &used, mtime);
        let mtime_s = mtime
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        run_ok(sb.gocache(["scan", "--full"]));
        let mut build = sb
            .go([
                "build",
                "-toolexec",
                gate.to_str().unwrap(),
                "-o",
                "edge.out",
                ".",
            ])
            .current_dir(&prog)
            .env("GATE", &gate_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        assert!(
            wait_for_file(&gate_dir.join("at-link"), Duration::from_secs(300)),
            "the build never reached its link step"
        );
        let now = walk(&cache);
        if used.iter().any(|n| now.get(n) != Some(&mtime_s)) {
            // Too slow for this margin: Go moved them. Try a wider one.
            std::fs::write(gate_dir.join("go"), "").unwrap();
            build.wait().unwrap();
            assert!(
                margin < 90,
                "the build took over 90 s to look its entries up"
            );
            continue;
        }
        // Now every entry the build was handed is over Go's hour old.
        while SystemTime::now() < mtime + Duration::from_secs(3602) {
            std::thread::sleep(Duration::from_millis(200));
        }
        let t = json(&run_expecting(
            sb.gocache(["trim", "--json", "--budget", "1MiB", "--grace", "0s"]),
            3,
        ));
        assert!(
            t["executed"]["removed"].as_u64().unwrap() > 100,
            "older entries still go: {}",
            t["executed"]
        );
        let h =
            json(&run_ok(sb.gocache([
                "hook", "--json", "--budget", "1MiB", "--grace", "0s",
            ])));
        assert_ne!(h["action"], "trim_running", "{h:#}");
        let left = walk(&cache);
        let gone: Vec<&String> = used.iter().filter(|n| !left.contains_key(*n)).collect();
        std::fs::write(gate_dir.join("go"), "").unwrap();
        let out = build.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "the build failed beside a --grace 0s trim ({} of its entries removed):\n{}",
            gone.len(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            gone.is_empty(),
            "{} of the build's entries were removed",
            gone.len()
        );
        // And `limits` says what a grace of 0s means.
        let l = String::from_utf8_lossy(
            &run_ok(sb.gocache(["limits"]).env("GOCACHE_GRACE", "0s")).stdout,
        )
        .to_string();
        assert!(l.contains("(0s set: the shortest is 1h)"), "{l}");
        return;
    }
    unreachable!();
}

// ---------------------------------------------------------------------------
// 5. Two users: root and nobody

/// `cmd` as `nobody` (uid and gid 65534, no other groups), same
/// arguments, environment and directory.
fn as_nobody(cmd: &Command) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        c.current_dir(d);
    }
    c
}

/// Why two users cannot be tried here, if they cannot: the tests run as
/// root and switch to `nobody` with `setpriv`.
fn no_second_user() -> Option<&'static str> {
    if !rustix::process::geteuid().is_root() {
        return Some("not running as root: cannot run commands as nobody");
    }
    let ok = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "true"])
        .status()
        .is_ok_and(|s| s.success());
    (!ok).then_some("setpriv cannot switch to uid 65534 here")
}

/// Gives the sandbox to `nobody`: everything in it owned by 65534, and
/// its root passable.
fn give_to_nobody(sb: &Sandbox) {
    std::fs::set_permissions(sb.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let st = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(sb.root())
        .status()
        .unwrap();
    assert!(st.success());
}

fn owner(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().uid()
}

/// One `gocache stats` by root in a cache `nobody` owns
/// leaves files `nobody` can write (as Go's own would, owned like the
/// cache); then `nobody`'s trim, hook, `ci begin`/`ci end` and the
/// wrapper's budget eviction all work, without a warning. And where an
/// older gocache left root's files there (0644, root's), `nobody`'s
/// commands still evict and exit 0, each with one warning.
#[test]
fn a_root_run_in_another_users_cache_never_locks_the_owner_out() {
    if let Some(why) = no_second_user() {
        eprintln!("skipped: {why}");
        return;
    }
    let sb = Sandbox::with_template();
    backdate(&sb.cache(), Duration::from_secs(3 * 3600));
    let hello = sb.write_hello("hello", "hello, world");
    give_to_nobody(&sb);
    let cache = sb.cache();
    let own = cache.join("gocache");

    // root, once, as `sudo gocache stats` would.
    run_ok(sb.gocache(["stats"]));
    for p in [own.clone(), own.join("index.sqlite")]
        .into_iter()
        .chain(["index.sqlite-wal", "index.sqlite-shm", "trim.lock"].map(|n| own.join(n)))
        .filter(|p| p.exists())
    {
        assert_eq!(owner(&p), 65534, "{} is the cache owner's", p.display());
    }
    run_ok(sb.gocache(["trim", "--budget", "100GiB"])); // makes trim.lock, as root
    assert_eq!(owner(&own.join("trim.lock")), 65534);

    let nobody_ok = |cmd: &mut Command| -> Output {
        let out = run_ok(as_nobody(cmd));
        assert_eq!(warnings(&out), Vec::<String>::new(), "{cmd:?}");
        out
    };
    // Go works for nobody, and so does every command.
    nobody_ok(sb.go(["build", "-o", "/dev/null", "."]).current_dir(&hello));
    let budget = (du(&cache) * 8 / 10).to_string();
    let t = json(&nobody_ok(
        &mut sb.gocache(["trim", "--json", "--budget", &budget]),
    ));
    assert_eq!(t["fallback"], serde_json::Value::Null, "{t:#}");
    assert!(t["executed"]["removed"].as_u64().unwrap() > 0, "{t:#}");
    let b = json(&nobody_ok(&mut sb.gocache(["ci", "begin", "--json"])));
    nobody_ok(sb.go(["build", "-o", "/dev/null", "."]).current_dir(&hello));
    let budget = (du(&cache) * 8 / 10).to_string();
    let e = json(&nobody_ok(
        &mut sb.gocache(["ci", "end", "--json", "--budget", &budget]),
    ));
    assert_eq!(e["run"]["id"], b["run"], "{e:#}");
    assert!(e["removed"]["entries"].as_u64().unwrap() > 0, "{e:#}");
    backdate(&cache, Duration::from_secs(3 * 3600));
    let budget = (du(&cache) * 8 / 10).to_string();
    let h = json(&nobody_ok(
        &mut sb.gocache(["hook", "--json", "--budget", &budget]),
    ));
    assert_eq!(h["action"], "trimmed", "{h:#}");
    // The wrapper's hook under GOCACHE_BUDGET.
    backdate(&cache, Duration::from_secs(3 * 3600));
    let before = walk(&cache).len();
    let budget = (du(&cache) * 8 / 10).to_string();
    let mut wrapped = sb.gocache(["go", "build", "-o", "/dev/null", "."]);
    wrapped.current_dir(&hello).env("GOCACHE_BUDGET", &budget);
    nobody_ok(&mut wrapped);
    assert!(walk(&cache).len() < before, "the hook evicted");

    // What an older gocache run by root left: root's files, 0644, in a
    // root-owned 0755 gocache/. nobody's commands still evict, exit 0,
    // and say once that the index cannot be written.
    let st = Command::new("chown")
        .args(["-R", "0:0"])
        .arg(&own)
        .status()
        .unwrap();
    assert!(st.success());
    for e in std::fs::read_dir(&own).unwrap() {
        let p = e.unwrap().path();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody_warned = |cmd: &mut Command| one_warning(&mut as_nobody(cmd), &[]);
    backdate(&cache, Duration::from_secs(3 * 3600));
    let budget = (du(&cache) * 8 / 10).to_string();
    let t = json(&as_nobody_warned(
        &mut sb.gocache(["trim", "--json", "--budget", &budget]),
    ));
    assert!(t["executed"]["removed"].as_u64().unwrap() > 0, "{t:#}");
    let budget = (du(&cache) * 8 / 10).to_string();
    let h = json(&as_nobody_warned(
        &mut sb.gocache(["hook", "--json", "--budget", &budget]),
    ));
    assert_eq!(h["action"], "trimmed", "{h:#}");
    as_nobody_warned(&mut sb.gocache(["ci", "begin"]));
    nobody_ok(sb.go(["build", "-o", "/dev/null", "."]).current_dir(&hello));
    let budget = (du(&cache) * 8 / 10).to_string();
    let e = json(&as_nobody_warned(
        &mut sb.gocache(["ci", "end", "--json", "--budget", &budget]),
    ));
    assert!(e["removed"]["entries"].as_u64().unwrap() > 0, "{e:#}");
}

/// Under umask 002, what gocache creates in the cache
/// has the mode Go gives its own files and directories there (0664 and
/// 0775), the index's WAL and shared memory included.
#[test]
fn what_gocache_creates_gets_gos_modes_under_the_umask() {
    let sb = Sandbox::with_template();
    let hello = sb.write_hello("hello", "hello, world");
    let with_umask = |cmd: &Command| {
        let mut c = Command::new("sh");
        c.args(["-c", "umask 002 && exec \"$@\"", "sh"])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        if let Some(d) = cmd.get_current_dir() {
            c.current_dir(d);
        }
        c
    };
    let before = walk(&sb.cache());
    run_ok(with_umask(
        sb.go(["build", "-o", "/dev/null", "."]).current_dir(&hello),
    ));
    let made: Vec<String> = walk(&sb.cache())
        .into_keys()
        .filter(|n| !before.contains_key(n) && n.ends_with("-d"))
        .collect();
    assert!(!made.is_empty());
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o777;
    let gos = mode(&sb.cache().join(&made[0]));
    assert_eq!(gos, 0o664, "Go's file");
    let mut keep_wal = sb.gocache(["hook"]);
    run_ok(with_umask(&sb.gocache(["stats"])));
    run_ok(with_umask(&sb.gocache(["trim", "--budget", "100GiB"])));
    run_ok(with_umask(keep_wal.current_dir(&hello)));
    let own = sb.cache().join("gocache");
    assert_eq!(mode(&own), 0o775, "gocache/");
    for f in ["index.sqlite", "trim.lock"] {
        assert_eq!(mode(&own.join(f)), gos, "{f}");
    }
    for f in ["index.sqlite-wal", "index.sqlite-shm"] {
        if own.join(f).exists() {
            assert_eq!(mode(&own.join(f)), gos, "{f}");
        }
    }
}

// ---------------------------------------------------------------------------
// 6. ci end on a full disk

/// How to get a small filesystem here: a tmpfs in a user and mount
/// namespace, or, as root, in a mount namespace alone. `None`: neither.
fn namespace_for_mounts() -> Option<Vec<&'static str>> {
    for ns in [
        &["--user", "--map-root-user", "--mount"][..],
        &["--mount"][..],
    ] {
        let ok = Command::new("unshare")
            .args(ns)
            .args(["sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt || exit 1"])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(ns.to_vec());
        }
    }
    None
}

/// `ci end` with the filesystem full (0 bytes free):
/// it evicts first, as trim does, meets the budget by `du`, keeps the
/// run (its record and seal: the next `ci begin` finds it ended), and
/// says so in one warning.
#[test]
fn ci_end_on_a_full_disk_evicts_first_and_keeps_the_run() {
    let Some(ns) = namespace_for_mounts() else {
        eprintln!(
            "skipped: no mount namespace here to mount a small filesystem in (unshare --mount)"
        );
        return;
    };
    let sb = Sandbox::new();
    let template = template_cache();
    let size = du(template);
    let mnt = sb.root().join("small");
    let report = sb.root().join("report");
    std::fs::create_dir_all(&mnt).unwrap();
    std::fs::create_dir_all(&report).unwrap();
    let hello = sb.write_hello("hello", "hello, full disk");
    let script = r#"
        set -u
        mount -t tmpfs -o size=$((SIZE / 1048576 + 32))m tmpfs "$MNT" || exit 77
        C="$MNT/cache"
        cp -a "$TEMPLATE" "$C"
        find "$C" -exec touch -h -d '3 days ago' {} +
        "$G" --cache-dir "$C" ci begin --json > "$R/begin.json" 2> "$R/begin.err"; echo $? > "$R/begin.rc"
        (cd "$HELLO" && GOCACHE="$C" go build -o /dev/null . > "$R/go.out" 2>&1); echo $? > "$R/go.rc"
        dd if=/dev/zero of="$MNT/filler" bs=64K 2>/dev/null
        echo x > "$MNT/probe" 2>/dev/null && echo "not full" > "$R/full" || : > "$R/full"
        "$G" --cache-dir "$C" ci end --json --budget "$BUDGET" > "$R/end.json" 2> "$R/end.err"; echo $? > "$R/end.rc"
        du -s -B1 "$C" | cut -f1 > "$R/end.du"
        rm -f "$MNT/filler" "$MNT/probe"
        "$G" --cache-dir "$C" ci begin --json > "$R/next.json" 2> "$R/next.err"; echo $? > "$R/next.rc"
    "#;
    let budget = size * 6 / 10;
    let mut unshare = Command::new("unshare");
    for (k, v) in sb.env() {
        unshare.env(k, v);
    }
    let status = unshare
        .args(&ns)
        .args(["sh", "-c", script])
        .env("SIZE", size.to_string())
        .env("BUDGET", budget.to_string())
        .env("MNT", &mnt)
        .env("R", &report)
        .env("HELLO", &hello)
        .env("TEMPLATE", template)
        .env("G", gocache_bin())
        .status()
        .unwrap();
    if status.code() == Some(77) {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    }
    let read = |f: &str| std::fs::read_to_string(report.join(f)).unwrap_or_default();
    let value = |f: &str| -> serde_json::Value {
        serde_json::from_str(&read(f)).unwrap_or_else(|e| panic!("{f}: {e}: {}", read(f)))
    };
    assert_eq!(read("begin.rc").trim(), "0", "{}", read("begin.err"));
    assert_eq!(read("go.rc").trim(), "0", "{}", read("go.out"));
    assert_eq!(read("full"), "", "the disk was full");
    assert_eq!(read("end.rc").trim(), "0", "{}", read("end.err"));
    let begin = value("begin.json");
    let end = value("end.json");
    assert_eq!(end["run"]["id"], begin["run"], "the run is known: {end:#}");
    assert!(end["removed"]["entries"].as_u64().unwrap() > 0, "{end:#}");
    assert!(end["used"]["entries"].as_u64().unwrap() > 0, "{end:#}");
    let used: u64 = read("end.du").trim().parse().unwrap();
    assert!(used <= budget, "du {used} > budget {budget}");
    let err = read("end.err");
    let w: Vec<&str> = err.lines().filter(|l| l.contains("warning:")).collect();
    assert_eq!(w.len(), 1, "one fault, one warning: {err}");
    assert!(w[0].contains("the disk was full"), "{err}");
    // The run's end was recorded: the next begin finds it sealed by it.
    assert_eq!(read("next.rc").trim(), "0", "{}", read("next.err"));
    let next = value("next.json");
    assert_eq!(next["start"], "sealed", "{next:#}");
    assert_eq!(next["sealed_by"], begin["run"], "{next:#}");
    assert_eq!(next["abandoned"], serde_json::Value::Null, "{next:#}");
}

// ---------------------------------------------------------------------------
// 7. A restore that reset every mtime

/// A cache saved after `ci end` and restored with
/// `cp -r` (every entry and directory gets the copy's time): the next
/// `ci begin` sees it, and `ci end --keep-runs 1` keeps exactly what the
/// job used or made (a walk independent of gocache says which), so the
/// job's build is still fully cached after.
#[test]
fn ci_runs_stay_exact_after_a_restore_with_cp_r() {
    let sb = Sandbox::with_template();
    backdate(&sb.cache(), Duration::from_secs(30 * 86_400));
    let hello = sb.write_hello("hello", "hello, restore");
    let first = sb.cache();
    run_ok(sb.gocache(["ci", "begin"]));
    run_ok(sb.go(["build", "-o", "/dev/null", "."]).current_dir(&hello));
    run_ok(sb.gocache(["ci", "end"]));
    // Restore with a plain cp -r (no -p): every mtime is the copy's.
    let restored = sb.root().join("restored");
    let st = Command::new("cp")
        .arg("-r")
        .arg(&first)
        .arg(&restored)
        .status()
        .unwrap();
    assert!(st.success());
    let copied = walk(&restored);
    let newest_before = walk(&first).values().copied().max().unwrap();
    assert!(
        copied.values().all(|&m| m > newest_before),
        "cp -r gave every entry the copy's time"
    );
    let on = |mut c: Command| {
        c.env("GOCACHE", &restored);
        c
    };
    let b = json(&run_ok(on(sb.gocache(["ci", "begin", "--json"]))));
    assert_eq!(b["start"], "sealed", "{b:#}");
    assert_eq!(
        b["moved_back"].as_u64().unwrap(),
        copied.len() as u64,
        "every reset mtime moved back"
    );
    // The job: the same build, fully cached.
    let mut job = on(sb.go(["build", "-x", "-o", "/dev/null", "."]));
    let out = run_ok(job.current_dir(&hello));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("/compile "));
    // What it used or made, by the disk: mtimes after begin's used_after.
    let used_after = b["used_after"].as_i64().unwrap();
    let touched: Vec<String> = walk(&restored)
        .into_iter()
        .filter(|(_, m)| *m > used_after)
        .map(|(n, _)| n)
        .collect();
    assert!(!touched.is_empty() && touched.len() < copied.len());
    let e = json(&run_ok(on(sb.gocache([
        "ci",
        "end",
        "--keep-runs",
        "1",
        "--json",
    ]))));
    assert_eq!(
        e["removed"]["entries"].as_u64().unwrap(),
        (copied.len() - touched.len()) as u64,
        "{e:#}"
    );
    let left: Vec<String> = walk(&restored).into_keys().collect();
    assert_eq!(left, touched, "kept exactly what the job used or made");
    let mut again = on(sb.go(["build", "-x", "-o", "/dev/null", "."]));
    let out = run_ok(again.current_dir(&hello));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("/compile "),
        "the job's build is still cached"
    );
}

// ---------------------------------------------------------------------------
// 8. One fault, one warning

/// An index gocache cannot use (here one from a newer
/// gocache) costs `ci begin` and `ci end` one warning each, saying what it
/// cost; a `GOCACHE_TRACE` that is not a setting, one coherent warning.
#[test]
fn one_fault_one_warning_in_ci_begin_and_end() {
    let sb = Sandbox::with_template();
    let hello = sb.write_hello("hello", "hello");
    run_ok(sb.gocache(["scan"]));
    let conn = rusqlite::Connection::open(sb.index()).unwrap();
    conn.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(conn);
    one_warning(
        &mut sb.gocache(["ci", "begin"]),
        &["newer than this gocache", "the run cannot be recorded"],
    );
    run_ok(sb.go(["build", "-o", "/dev/null", "."]).current_dir(&hello));
    one_warning(
        &mut sb.gocache(["ci", "end"]),
        &["newer than this gocache", "nothing counts as used"],
    );
    // A fresh index: GOCACHE_TRACE=abc is a bad setting, refused before
    // anything is done (exit 2, as every bad value of `ci end`'s), in one
    // line that says what to do; it never reads as two contradicting ones.
    std::fs::remove_dir_all(sb.cache().join("gocache")).unwrap();
    run_ok(sb.gocache(["ci", "begin"]));
    let out = run_expecting(sb.gocache(["ci", "end"]).env("GOCACHE_TRACE", "abc"), 2);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("GOCACHE_TRACE=\"abc\"") && err.contains("unset it for the default"),
        "{err}"
    );
    assert!(!err.contains("recording no trace"), "{err}");
}

// ---------------------------------------------------------------------------
// Every Go from 1.24

/// A trim, the wrapper and its hook, `go run`'s counted executables,
/// GOCACHEPROG and the CI mode, end to end, with each Go minor users run
/// ([`GO_VERSIONS`]: installed like the pinned one, or named by
/// `$GOCACHE_TEST_GO_1_24` and so on). Each on a cache of its own, built
/// cold by that Go (a small program: about half a minute each on two
/// cores).
#[test]
fn every_go_from_1_24_works_with_trim_the_wrapper_prog_and_ci() {
    for version in go_versions() {
        let go = go_bin_of(&version);
        let sb = Sandbox::with_go(&go);
        let hi = sb.write_main(
            "hi",
            "package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(\"hi\\n\") }\n",
        );
        let at = |what: &str| format!("Go {version}: {what}");
        // A cold build by plain go; a trim to half the cache (as if it were
        // three hours ago), then go builds again.
        run_ok(sb.go(["build", "-o", "/dev/null", "."]).current_dir(&hi));
        backdate(&sb.cache(), Duration::from_secs(3 * 3600));
        let budget = du(&sb.cache()) / 2;
        let t = json(&run_ok(sb.gocache([
            "trim",
            "--json",
            "--budget",
            &budget.to_string(),
        ])));
        assert_eq!(t["limits_met"], true, "{}: {t:#}", at("trim"));
        assert!(du(&sb.cache()) <= budget, "{}", at("du after trim"));
        let out = run_ok(sb.go(["run", "."]).current_dir(&hi));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hi\n",
            "{}",
            at("after trim")
        );
        // The wrapper: build, then run (the executable is cached and
        // counted).
        let mut c = sb.gocache(["go", "build", "-o", "/dev/null", "."]);
        run_ok(c.current_dir(&hi));
        let mut c = sb.gocache(["go", "run", "."]);
        let out = run_ok(c.current_dir(&hi));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hi\n",
            "{}",
            at("go run")
        );
        let s = json(&run_ok(sb.gocache(["stats", "--json"])));
        assert_eq!(
            s["total"]["entries"].as_u64().unwrap(),
            walk(&sb.cache()).len() as u64,
            "{}",
            at("stats counts what is on disk")
        );
        assert_eq!(
            s["kinds"]["exe"]["entries"],
            1,
            "{}",
            at("one cached executable")
        );
        assert_eq!(
            s["most_used_exes"][0]["hits"],
            1,
            "{}",
            at("its run counted")
        );
        // GOCACHEPROG.
        let prog = format!("{} prog", gocache_bin().display());
        let mut c = sb.go(["build", "-o", "/dev/null", "."]);
        run_ok(c.current_dir(&hi).env("GOCACHEPROG", &prog));
        let s = json(&run_ok(sb.gocache(["stats", "--json"])));
        let session = &s["prog_sessions"][0];
        assert!(
            session["hits"].as_u64().unwrap() > 0,
            "{}: {session:#}",
            at("prog")
        );
        // The CI mode.
        let b = json(&run_ok(sb.gocache(["ci", "begin", "--json"])));
        run_ok(sb.go(["build", "-o", "/dev/null", "."]).current_dir(&hi));
        let e = json(&run_ok(sb.gocache([
            "ci",
            "end",
            "--json",
            "--keep-runs",
            "1",
        ])));
        assert_eq!(e["run"]["id"], b["run"], "{}", at("ci end"));
        assert!(
            e["used"]["entries"].as_u64().unwrap() > 0,
            "{}",
            at("ci used")
        );
        assert!(
            e["removed"]["entries"].as_u64().unwrap() > 0,
            "{}",
            at("ci removed")
        );
    }
}
