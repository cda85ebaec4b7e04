//! `gocache limits`, and limits from the environment and the config file
//!: flags > environment > config file > stored >
//! defaults, the same for trim, the hook and `limits`.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The budget a dry run plans with.
fn planned_budget(out: &std::process::Output) -> Value {
    json(out)["plan"]["limits"]["budget"].clone()
}

#[test]
fn each_limit_comes_from_flag_env_config_stored_or_default_and_says_which() {
    let sb = Sandbox::with_template();
    let config_dir = sb.root().join("home/.config/gocache");
    std::fs::create_dir_all(&config_dir).unwrap();
    let config = config_dir.join("config");
    std::fs::write(
        &config,
        "# for cron and CI\nbudget = \"3GiB\"\nexe-quota = 300MiB\nmin_free = 1%\n",
    )
    .unwrap();
    run_ok(sb.gocache([
        "limits",
        "--budget",
        "4GiB",
        "--grace",
        "2h",
        "--exe-quota",
        "1G",
    ]));

    let l = json(&run_ok(
        sb.gocache(["limits", "--json"])
            .env("GOCACHE_BUDGET", "2GiB")
            .env("GOCACHE_EXE_MAX_AGE", "off"),
    ));
    assert_eq!(l["config_file"], config.display().to_string());
    assert_eq!(l["effective"]["budget"], 2u64 << 30);
    assert_eq!(l["effective"]["exe_quota"], 300u64 << 20);
    assert_eq!(l["effective"]["grace"], 7200);
    assert_eq!(l["effective"]["exe_max_age"], Value::Null);
    assert_eq!(l["effective"]["build_max_age"], 5 * 86400);
    let sources: Vec<(&str, &str)> = [
        ("budget", "env"),
        ("exe_quota", "config"),
        ("build_max_age", "default"),
        ("exe_max_age", "env"),
        ("grace", "stored"),
        ("min_free", "config"),
    ]
    .to_vec();
    for (k, v) in sources {
        assert_eq!(l["sources"][k], v, "{k}: {l:#}");
    }
    // What was stored stays stored, under what overrides it.
    assert_eq!(l["stored"]["budget"]["bytes"], 4u64 << 30);

    // The table says the same, each line within 80 columns.
    let out = run_ok(sb.gocache(["limits"]).env("GOCACHE_BUDGET", "2GiB"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for want in [
        "budget          2 GiB         GOCACHE_BUDGET (over the stored value)",
        "grace           2h            stored in the index",
        "build max age   5d            default",
    ] {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }
    assert!(
        text.contains(&format!(
            "exe quota       300 MiB       {}:3 (over the stored value)",
            config.display()
        )),
        "{text}"
    );

    // trim plans with the same layering; a flag is over everything.
    let trim = |budget_env: Option<&str>, flag: Option<&str>| {
        let mut c = sb.gocache(["trim", "-n", "--json"]);
        if let Some(b) = budget_env {
            c.env("GOCACHE_BUDGET", b);
        }
        if let Some(f) = flag {
            c.args(["--budget", f]);
        }
        planned_budget(&run_ok(c))
    };
    assert_eq!(trim(Some("2GiB"), Some("1GiB")), 1u64 << 30);
    assert_eq!(trim(Some("2GiB"), None), 2u64 << 30);
    assert_eq!(trim(None, None), 3u64 << 30, "the config file's");
    std::fs::remove_file(&config).unwrap();
    assert_eq!(trim(None, None), 4u64 << 30, "the stored one");
    // GOCACHE_CONFIG names another file, or none.
    let other = sb.root().join("gocache.conf");
    std::fs::write(&other, "budget = 5GiB\n").unwrap();
    let l = json(&run_ok(
        sb.gocache(["limits", "--json"])
            .env("GOCACHE_CONFIG", &other),
    ));
    assert_eq!(l["effective"]["budget"], 5u64 << 30);
    let l = json(&run_ok(
        sb.gocache(["limits", "--json"])
            .env("GOCACHE_CONFIG", "off"),
    ));
    assert_eq!(l["config_file"], Value::Null);
    run_ok(sb.gocache(["limits", "--reset"]));
    let l = json(&run_ok(sb.gocache(["limits", "--json"])));
    assert!(
        l["sources"]
            .as_object()
            .unwrap()
            .values()
            .all(|v| v == "default")
    );
}

#[test]
fn bad_limits_in_the_environment_or_the_config_file_exit_2_naming_where() {
    let sb = Sandbox::with_template();
    let conf = sb.root().join("c");
    std::fs::write(&conf, "budget = 10G\nbudgte = 1G\n").unwrap();
    let cases: Vec<(&str, String, String)> = vec![
        (
            "GOCACHE_BUDGET",
            "0".into(),
            "GOCACHE_BUDGET=0: a limit of \"0\" would remove".into(),
        ),
        (
            "GOCACHE_GRACE",
            "off".into(),
            "GOCACHE_GRACE=off: the grace period cannot".into(),
        ),
        (
            "GOCACHE_EXE_MAX_AGE",
            "1mo".into(),
            "no fixed length".into(),
        ),
        (
            "GOCACHE_CONFIG",
            conf.display().to_string(),
            format!("{}:2: unknown key \"budgte\"", conf.display()),
        ),
        (
            "GOCACHE_CONFIG",
            sb.root().join("missing.conf").display().to_string(),
            "named by GOCACHE_CONFIG".into(),
        ),
    ];
    for (var, value, needle) in cases {
        for cmd in [&["trim", "-n"][..], &["limits"], &["hook"]] {
            let out = sb.gocache(cmd).env(var, &value).output().unwrap();
            let err = stderr_of(&out);
            assert_eq!(out.status.code(), Some(2), "{cmd:?} {var}={value}: {err}");
            assert!(err.contains(&needle), "{cmd:?} {var}={value}: {err}");
        }
    }
}

/// The hook reads the environment too: a CI job sets an exe quota with no
/// stored state, and the wrapper's hook keeps it.
#[test]
fn the_hook_enforces_an_exe_quota_from_the_environment() {
    let sb = Sandbox::with_template();
    backdate(&sb.cache(), Duration::from_secs(3 * 3600));
    let h = json(&run_ok(
        sb.gocache(["hook", "--json"])
            .env("GOCACHE_EXE_QUOTA", "0B"),
    ));
    assert_eq!(h["action"], "trimmed", "{h:#}");
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    assert_eq!(s["kinds"]["exe"]["entries"], 0, "{s:#}");
}

/// `gocache limits` shows the limits when the index cannot be written
/// (here: one from a newer gocache, which is left alone), from the
/// environment, the config file and the defaults; storing says why not.
#[test]
fn limits_are_shown_when_the_index_cannot_be_written() {
    let sb = Sandbox::with_template();
    run_ok(sb.gocache(["limits", "--budget", "1GiB"]));
    let conn = rusqlite::Connection::open(sb.index()).unwrap();
    conn.execute_batch("PRAGMA user_version = 999").unwrap();
    drop(conn);
    let out = run_ok(sb.gocache(["limits"]).env("GOCACHE_EXE_QUOTA", "2G"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("exe quota       2 GiB         GOCACHE_EXE_QUOTA"),
        "{text}"
    );
    assert!(stderr_of(&out).contains("newer"), "{}", stderr_of(&out));
    let out = sb.gocache(["limits", "--budget", "2G"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("or set them in the environment or the config file"),
        "{}",
        stderr_of(&out)
    );
    if !rustix::process::geteuid().is_root() {
        // A cache that cannot be written at all: the index is read as is.
        use std::os::unix::fs::PermissionsExt;
        let conn = rusqlite::Connection::open(sb.index()).unwrap();
        conn.pragma_update(None, "user_version", gocache::index::SCHEMA_VERSION)
            .unwrap();
        drop(conn);
        let ro = std::fs::Permissions::from_mode(0o555);
        std::fs::set_permissions(sb.index().parent().unwrap(), ro.clone()).unwrap();
        std::fs::set_permissions(sb.index(), std::fs::Permissions::from_mode(0o444)).unwrap();
        let l = json(&run_ok(sb.gocache(["limits", "--json"])));
        assert_eq!(l["effective"]["budget"], 1u64 << 30);
        assert_eq!(l["sources"]["budget"], "stored");
        let rw = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(sb.index().parent().unwrap(), rw).unwrap();
    }
}

/// A bad value in the environment or the config file is
/// refused before anything is created, as the same value given as a flag
/// is: in an empty cache, each command exits 2 naming the value, and the
/// cache stays empty (no `gocache/index.sqlite`, `-wal` or `-shm`).
#[test]
fn a_bad_setting_is_refused_before_anything_is_created() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.cache()).unwrap();
    let quota = sb.root().join("quota.conf");
    std::fs::write(&quota, "budget = 10GiB\nexe-quota = lots\n").unwrap();
    let latin1 = sb.root().join("latin1.conf");
    std::fs::write(&latin1, b"# caf\xe9\nbudget = 10GiB\n").unwrap();
    let missing = sb.root().join("nonexistent");
    let limits_cmds: &[&[&str]] = &[
        &["trim", "-n"],
        &["trim"],
        &["limits"],
        &["limits", "--budget", "1GiB"],
        &["hook"],
        &["stats"],
        &["stats", "--json"],
        &["ci", "end"],
    ];
    let cases: Vec<(&str, std::ffi::OsString, String, &[&[&str]])> = vec![
        (
            "GOCACHE_BUDGET",
            "lots".into(),
            "GOCACHE_BUDGET=lots: invalid size".into(),
            limits_cmds,
        ),
        (
            "GOCACHE_GRACE",
            "off".into(),
            "GOCACHE_GRACE=off: the grace period cannot".into(),
            limits_cmds,
        ),
        (
            "GOCACHE_MIN_FREE",
            "200%".into(),
            "GOCACHE_MIN_FREE=200%: invalid size".into(),
            limits_cmds,
        ),
        (
            "GOCACHE_CONFIG",
            quota.clone().into(),
            format!("{}:2: exe-quota: invalid size", quota.display()),
            limits_cmds,
        ),
        (
            "GOCACHE_CONFIG",
            missing.clone().into(),
            format!(
                "the config file {} cannot be read: No such file",
                missing.display()
            ),
            limits_cmds,
        ),
        (
            "GOCACHE_CONFIG",
            latin1.clone().into(),
            format!("the config file {} cannot be read", latin1.display()),
            limits_cmds,
        ),
        (
            "GOCACHE_TRACE",
            "many".into(),
            "GOCACHE_TRACE=\"many\": not off, on or a number of events".into(),
            &[&["hook"], &["ci", "end"]],
        ),
    ];
    for (var, value, needle, cmds) in &cases {
        for cmd in *cmds {
            let out = sb.gocache(*cmd).env(var, value).output().unwrap();
            let err = stderr_of(&out);
            let what = format!("{var}={} gocache {}", value.display(), cmd.join(" "));
            assert_eq!(out.status.code(), Some(2), "{what}: {err}");
            assert!(err.contains(needle.as_str()), "{what}: {err}");
            assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
            assert!(out.stdout.is_empty(), "{what}");
            let left: Vec<_> = std::fs::read_dir(sb.cache())
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            assert!(left.is_empty(), "{what} left {left:?}");
        }
    }
}

/// `ci end --keep-runs -1` says what is wrong with the
/// value, as the size flags do, rather than taking it for a flag.
#[test]
fn a_negative_keep_runs_is_an_invalid_value() {
    let sb = Sandbox::new();
    for bad in ["-1", "0"] {
        let out = sb
            .gocache(["ci", "end", "--keep-runs", bad])
            .output()
            .unwrap();
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("invalid value '{bad}' for '--keep-runs <N>'")),
            "{err}"
        );
        assert!(!err.contains("unexpected argument"), "{err}");
    }
}

/// One stored limit can be unset, with the word
/// `gocache limits` shows for it (`none`; `off` and `unlimited` too), and
/// the others stay. Elsewhere `none` means no such limit, over what a
/// lower layer sets, as `off` does for an age.
#[test]
fn a_stored_size_limit_is_unset_with_the_word_limits_shows() {
    let sb = Sandbox::with_template();
    for word in ["none", "off", "unlimited", "NONE"] {
        run_ok(sb.gocache([
            "limits",
            "--budget",
            "4GiB",
            "--exe-quota",
            "1GiB",
            "--min-free",
            "1%",
        ]));
        let out = run_ok(sb.gocache(["limits", "--budget", word]));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            text.contains("budget          none          default"),
            "{word}: {text}"
        );
        let l = json(&run_ok(sb.gocache(["limits", "--json"])));
        assert_eq!(l["stored"].get("budget"), None, "{word}: {l:#}");
        assert_eq!(l["stored"]["exe_quota"]["bytes"], 1u64 << 30, "{l:#}");
        assert_eq!(l["effective"]["budget"], Value::Null, "{l:#}");
        run_ok(sb.gocache(["limits", "--exe-quota", word, "--min-free", word]));
        let l = json(&run_ok(sb.gocache(["limits", "--json"])));
        assert_eq!(l["stored"], serde_json::json!({}), "{word}: {l:#}");
    }
    // In a layer over the stored one, none is no budget for that run.
    run_ok(sb.gocache(["limits", "--budget", "4GiB"]));
    let planned = |c: &mut std::process::Command| planned_budget(&run_ok(c));
    assert_eq!(
        planned(&mut sb.gocache(["trim", "-n", "--json"])),
        4u64 << 30
    );
    assert_eq!(
        planned(&mut sb.gocache(["trim", "-n", "--json", "--budget", "none"])),
        Value::Null
    );
    assert_eq!(
        planned(
            sb.gocache(["trim", "-n", "--json"])
                .env("GOCACHE_BUDGET", "none")
        ),
        Value::Null
    );
    let l = json(&run_ok(
        sb.gocache(["limits", "--json"])
            .env("GOCACHE_BUDGET", "unlimited"),
    ));
    assert_eq!(l["effective"]["budget"], Value::Null, "{l:#}");
    assert_eq!(l["sources"]["budget"], "env", "{l:#}");
    // The help says so.
    let help =
        String::from_utf8_lossy(&run_ok(sb.gocache(["limits", "--help"])).stdout).into_owned();
    assert!(help.contains("--budget none"), "{help}");
}
