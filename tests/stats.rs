//! `gocache stats` and what a newcomer reads: the cache against its
//! limits, output that fits 80 columns, which modules hold the
//! bytes, `--zero`, `gocache dir`, and `-q`.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn stdout_of(mut cmd: impl std::borrow::BorrowMut<Command>) -> String {
    text(&run_ok(cmd.borrow_mut()).stdout)
}

/// The line of `report` starting with `label`.
fn line<'a>(report: &'a str, label: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no line {label:?} in\n{report}"))
}

/// Every line within 80 columns, and no entry's 64-digit name in full.
#[track_caller]
fn fits_80_columns(what: &str, out: &str) {
    for l in out.lines() {
        assert!(
            l.chars().count() <= 80,
            "{what}: {} columns: {l:?}",
            l.chars().count()
        );
        let hex_run = l
            .split(|c: char| !c.is_ascii_hexdigit())
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(hex_run < 64, "{what}: a whole entry name: {l:?}");
    }
}

/// Stats opens with the cache against its limits, as
/// `ccache -s` does, and says when every hit count is zero and why.
#[test]
fn stats_opens_with_the_cache_against_its_limits_and_the_last_trim() {
    let sb = Sandbox::with_template();
    backdate(&sb.cache(), Duration::from_secs(3 * 3600));
    let first = json(&run_ok(sb.gocache(["stats", "--json"])));
    let total = first["total"]["allocated_bytes"].as_u64().unwrap();
    let budget = total / 2;
    run_ok(
        sb.gocache([
            "limits",
            "--exe-quota",
            "100GiB",
            "--min-free",
            "1B",
            "--budget",
        ])
        .arg(budget.to_string()),
    );
    let report = stdout_of(sb.gocache(["stats"]));
    let size = line(&report, "Size         ");
    assert!(
        size.contains(" of the ")
            && size.contains(" budget (")
            && size.contains("%), as du counts it"),
        "{size}"
    );
    assert!(
        line(&report, "Executables  ").contains(" of the 100 GiB quota (0%)"),
        "{report}"
    );
    assert!(
        line(&report, "Free space   ").contains("; floor 1 B"),
        "{report}"
    );
    assert_eq!(line(&report, "Last trim    "), "Last trim    none recorded");
    let limits = line(&report, "Limits       ");
    assert!(
        limits.starts_with("Limits       not met: `gocache trim` would remove "),
        "{limits}"
    );
    assert!(
        report.contains(
            "Hint: no hits recorded yet; only `gocache go` and `gocache prog` count them."
        ),
        "{report}"
    );
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    let a = &s["against_limits"];
    assert_eq!(a["met"], false, "{a:#}");
    assert!(a["budget_share"].as_f64().unwrap() > 1.9, "{a:#}");
    assert!(a["trim_would_remove"]["entries"].as_u64().unwrap() > 0);
    assert_eq!(s["limits"]["budget"], budget);
    assert_eq!(s["last_trim"], Value::Null);
    assert_eq!(s["hits_recorded"], false);

    let t = json(&run_ok(sb.gocache(["trim", "--json"])));
    assert_eq!(t["limits_met"], true, "{t:#}");
    let removed = t["executed"]["removed"].as_u64().unwrap();
    // Right after the trim, stats measures the cache the trim left: its
    // own sync rereads what the trim changed and writes to the index,
    // which its close folds back into the file, so that is not counted
    // on top (it once turned a trim's "met" into "not met" in stats).
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    assert_eq!(
        s["against_limits"]["cache_bytes"].as_u64(),
        Some(
            t["after"]["total"]["allocated_bytes"].as_u64().unwrap()
                + t["fixed_bytes"].as_u64().unwrap()
        ),
        "{:#}\n{t:#}",
        s["against_limits"]
    );
    let report = stdout_of(sb.gocache(["stats"]));
    let last = line(&report, "Last trim    ");
    assert!(
        last.starts_with(&format!(
            "Last trim    just now: removed {removed} entries ("
        )) || last.starts_with("Last trim    just now: removed "),
        "{last}"
    );
    assert!(last.ends_with("), limits met"), "{last}");
    assert_eq!(line(&report, "Limits       "), "Limits       met");
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    let a = &s["against_limits"];
    assert_eq!(a["met"], true, "{a:#}");
    assert!(a["cache_bytes"].as_u64().unwrap() <= budget, "{a:#}");
    assert!(a["budget_share"].as_f64().unwrap() <= 1.0);
    assert_eq!(s["last_trim"]["removed"], removed);
    assert_eq!(s["last_trim"]["limits_met"], true);
    fits_80_columns("stats", &report);

    // A run through the wrapper records hits: no hint any more.
    let dir = sb.write_hello("greet", "hi");
    run_ok(sb.gocache(["go", "run", "."]).current_dir(&dir));
    let report = stdout_of(sb.gocache(["stats"]));
    assert!(!report.contains("Hint:"), "{report}");
}

/// Human output fits 80 columns, entry names are
/// shortened, programs are named by import path, and the largest and most
/// used executables are one list when they are the same.
#[test]
fn human_output_fits_80_columns_and_says_each_thing_once() {
    let sb = Sandbox::with_template();
    backdate(&sb.cache(), Duration::from_secs(10 * 86_400));
    std::fs::write(
        sb.cache().join("00").join(format!("{}-d", "ab".repeat(32))),
        "misplaced",
    )
    .unwrap();
    let report = stdout_of(sb.gocache(["stats"]));
    fits_80_columns("stats", &report);
    // No hits: "most used" would only repeat the list by recency.
    assert!(report.contains("\nLargest executables:\n"), "{report}");
    assert!(!report.contains("Most used"), "{report}");
    for program in ["example.com/hello", "example.com/hola"] {
        assert!(
            report.contains(&format!("  {program} ")),
            "{program} in\n{report}"
        );
    }
    assert!(
        report.contains("00/abababab…-d: file in the wrong subdirectory"),
        "{report}"
    );
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    let hello = s["largest_exes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["program"] == "hello")
        .unwrap();
    assert_eq!(hello["import_path"], "example.com/hello");
    assert_eq!(
        hello["entry"].as_str().unwrap().len(),
        2 + 1 + 66,
        "JSON keeps names whole"
    );

    // hola run twice, hello once (the template's programs, the same
    // sources): the most used come in another order than the largest
    // (the same size) only if the hits say so.
    for (name, runs) in [("hola", 2), ("hello", 1)] {
        let greeting = if name == "hola" {
            "hola, mundo"
        } else {
            "hello, world"
        };
        let dir = sb.write_hello(name, greeting);
        for _ in 0..runs {
            run_ok(sb.gocache(["go", "run", "."]).current_dir(&dir));
        }
    }
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    let order = |k: &str| -> Vec<String> {
        s[k].as_array()
            .unwrap()
            .iter()
            .map(|e| e["entry"].as_str().unwrap().to_string())
            .collect()
    };
    let report = stdout_of(sb.gocache(["stats"]));
    fits_80_columns("stats", &report);
    if order("largest_exes") == order("most_used_exes") {
        assert!(
            report.contains("Executables (the largest are the most used):"),
            "{report}"
        );
        assert!(!report.contains("Largest executables"), "{report}");
    } else {
        assert!(report.contains("Largest executables:"), "{report}");
        assert!(report.contains("Most used executables:"), "{report}");
    }
    assert_eq!(
        s["most_used_exes"][0]["import_path"], "example.com/hola",
        "{:#}",
        s["most_used_exes"]
    );

    for cmd in [
        &["trim", "-n", "-v", "--budget", "10MiB"][..],
        &["trim", "-n", "--budget", "0B", "--grace", "0"],
        &["limits"],
        &["scan", "--full"],
        &["dir"],
    ] {
        let out = stdout_of(sb.gocache(cmd));
        fits_80_columns(&format!("{cmd:?}"), &out);
    }
    for cmd in ["stats", "trim", "limits", "scan", "hook", "go", "dir"] {
        fits_80_columns(cmd, &stdout_of(sb.gocache(["help", cmd])));
    }
}

/// `-q` means quiet everywhere: no progress, warnings or
/// summaries; a report asked for (stats, dir, --json) still comes.
#[test]
fn quiet_means_quiet_everywhere() {
    let sb = Sandbox::with_template();
    backdate(&sb.cache(), Duration::from_secs(3 * 3600));
    let dir = sb.write_hello("q", "quiet");
    // The wrapper's own messages (an eviction by the hook) are gocache's;
    // go's output is go's. Without -q the hook says what it evicted.
    let loud = Sandbox::with_template();
    backdate(&loud.cache(), Duration::from_secs(3 * 3600));
    let out = run_ok(
        loud.gocache(["go", "build", "std"])
            .env("GOCACHE_BUDGET", "1B"),
    );
    assert!(
        text(&out.stderr).contains("gocache: evicted"),
        "{}",
        text(&out.stderr)
    );
    let before = json(&run_ok(sb.gocache(["stats", "--json"])))["total"]["entries"].clone();
    let out = run_ok(
        sb.gocache(["-q", "go", "run", "."])
            .current_dir(&dir)
            .env("GOCACHE_BUDGET", "1B"),
    );
    assert_eq!(text(&out.stdout), "quiet\n");
    assert_eq!(text(&out.stderr), "");
    let after = json(&run_ok(sb.gocache(["stats", "--json"])))["total"]["entries"].clone();
    assert!(
        after.as_u64() < before.as_u64(),
        "the hook evicted, quietly"
    );
    // 3: the trim ran, and the executables just used (within the grace
    // period) stay: one line says so, even with -q.
    let out = run_expecting(sb.gocache(["-q", "trim", "--exe-quota", "0B"]), 3);
    assert_eq!(text(&out.stdout), "");
    assert!(
        text(&out.stderr).starts_with("gocache: exe_quota not met: still ")
            && text(&out.stderr).lines().count() == 1,
        "{}",
        text(&out.stderr)
    );
    let silent: &[&[&str]] = &[
        &["-q", "scan"],
        &["-q", "trim", "-n", "-v"],
        &["-q", "limits", "--budget", "10GiB"],
        &["-q", "hook", "--budget", "1B"],
        &["-q", "stats", "--zero"],
    ];
    for cmd in silent {
        let out = sb.gocache(*cmd).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{cmd:?}");
        assert_eq!(
            (text(&out.stdout), text(&out.stderr)),
            (String::new(), String::new()),
            "{cmd:?}"
        );
    }
    // A warning (a corrupt index, moved aside) is silenced too, not the
    // report asked for.
    std::fs::write(sb.index(), vec![0x5au8; 4096]).unwrap();
    let out = run_ok(sb.gocache(["-q", "stats"]));
    assert!(text(&out.stdout).contains("By tier:"));
    assert_eq!(text(&out.stderr), "");
    let out = run_ok(sb.gocache(["-q", "dir"]));
    assert_eq!(text(&out.stdout), format!("{}\n", sb.cache().display()));
}

/// Which projects hold the bytes. The wrapper credits
/// what each go command added or used to its module (go.mod directory),
/// `gocache prog` to its session's; `stats` shows bytes and entries per
/// module, `trim -v` the module of each entry.
#[test]
fn stats_and_trim_say_which_modules_hold_the_bytes() {
    let sb = Sandbox::with_template();
    let exp = sb.write_main(
        "experiment",
        "package main\n\nimport (\n\t\"fmt\"\n\t\"net/url\"\n)\n\nfunc main() { fmt.Println(url.PathEscape(\"a b\")) }\n",
    );
    let tool = sb.write_hello("tool", "a tool");
    std::fs::create_dir_all(tool.join("cmd/sub")).unwrap();
    run_ok(
        sb.gocache(["go", "build", "-o", "/dev/null", "."])
            .current_dir(&exp),
    );
    // From a subdirectory, and with go -C: the module is the go.mod's.
    run_ok(sb.gocache(["go", "run", "."]).current_dir(&tool));
    run_ok(
        sb.gocache(["go", "-C", "tool", "run", "."])
            .current_dir(sb.root().join("work")),
    );
    let prog = sb.write_hello("served", "served by prog");
    run_ok(
        sb.go(["build", "-o", "/dev/null", "."])
            .current_dir(&prog)
            .env("GOCACHEPROG", format!("{} prog", gocache_bin().display())),
    );

    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    let modules = s["modules"].as_array().unwrap();
    let module = |path: &str| -> &Value {
        modules
            .iter()
            .find(|m| m["path"] == path)
            .unwrap_or_else(|| panic!("no {path} in {modules:#?}"))
    };
    let e = module("example.com/experiment");
    assert_eq!(e["root"], exp.display().to_string());
    assert!(e["entries"].as_u64().unwrap() >= 2, "{e:#}");
    assert!(e["allocated_bytes"].as_u64().unwrap() > 0);
    let t = module("example.com/tool");
    assert!(t["entries"].as_u64().unwrap() >= 2, "{t:#}");
    assert!(module("example.com/served")["entries"].as_u64().unwrap() >= 1);
    // The module's entries and the rest add up to the cache.
    let credited: u64 = modules.iter().map(|m| m["entries"].as_u64().unwrap()).sum();
    assert_eq!(
        credited + s["modules_unrecorded"]["entries"].as_u64().unwrap(),
        s["total"]["entries"].as_u64().unwrap()
    );
    // The tool's executable was used by the tool's module.
    assert_eq!(
        s["most_used_exes"][0]["import_path"], "example.com/tool",
        "{:#}",
        s["most_used_exes"]
    );
    let report = stdout_of(sb.gocache(["stats"]));
    let by_module = line(&report, "  example.com/experiment ");
    assert!(by_module.ends_with("just now"), "{by_module}");
    assert!(line(&report, "  (none recorded) ").len() > 20);

    // trim -v names the module of each entry it would remove. Ten days
    // later (the index keeps the newest use it saw: age it too).
    backdate(&sb.cache(), Duration::from_secs(10 * 86_400));
    let conn = rusqlite::Connection::open(sb.index()).unwrap();
    conn.execute(
        "UPDATE entries SET last_use = last_use - 864000, mtime = mtime - 864000",
        [],
    )
    .unwrap();
    drop(conn);
    let plan = stdout_of(sb.gocache(["trim", "-n", "-v"]));
    let exp_lines: Vec<&str> = plan
        .lines()
        .filter(|l| l.ends_with(" example.com/experiment"))
        .collect();
    assert!(exp_lines.len() >= 2, "{plan}");
    assert!(
        exp_lines
            .iter()
            .all(|l| l.starts_with("would remove ") && l.contains(" age "))
    );
    fits_80_columns("trim -n -v", &plan);
    let done = stdout_of(sb.gocache(["trim", "-v"]));
    assert!(
        done.lines()
            .any(|l| l.starts_with("removed ") && l.ends_with(" example.com/tool")),
        "{done}"
    );
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    assert!(
        s["modules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["path"] != "example.com/experiment"),
        "{:#}",
        s["modules"]
    );
}

/// Every entry of the cache (`xx/<hex>-a`, `xx/<hex>-d`) to its mtime in
/// nanoseconds, by the test's own walk.
fn entry_mtimes(cache: &Path) -> BTreeMap<String, i128> {
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
            if entry {
                let md = std::fs::symlink_metadata(e.path()).unwrap();
                let ns = md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128;
                out.insert(format!("{sub}/{name}"), ns);
            }
        }
    }
    out
}

/// The entries of `after` that are new since `before` or whose mtime
/// moved: what a go command between the two walks wrote or used.
fn touched(before: &BTreeMap<String, i128>, after: &BTreeMap<String, i128>) -> BTreeSet<String> {
    after
        .iter()
        .filter(|(n, t)| before.get(*n) != Some(t))
        .map(|(n, _)| n.clone())
        .collect()
}

/// `du -sc --block-size=1` of exactly the entries `names` under `cache`.
fn du_of<'a>(cache: &Path, names: impl IntoIterator<Item = &'a String>) -> u64 {
    let paths: Vec<PathBuf> = names.into_iter().map(|n| cache.join(n)).collect();
    if paths.is_empty() {
        return 0;
    }
    let out = run_ok(
        Command::new("du")
            .args(["-sc", "--block-size=1"])
            .args(&paths),
    );
    let total = text(&out.stdout);
    let last = total.lines().last().unwrap();
    assert!(last.ends_with("\ttotal"), "{total}");
    last.split_whitespace().next().unwrap().parse().unwrap()
}

/// `(entries, allocated bytes)` of each module `stats --json` lists, by
/// module path, and of the entries credited to none.
fn by_module(sb: &Sandbox) -> (BTreeMap<String, (u64, u64)>, (u64, u64)) {
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    let figures = |v: &Value| {
        (
            v["entries"].as_u64().unwrap(),
            v["allocated_bytes"].as_u64().unwrap(),
        )
    };
    let modules = s["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["path"].as_str().unwrap().to_string(), figures(m)))
        .collect();
    (modules, figures(&s["modules_unrecorded"]))
}

/// The first hook on a cache the index has never seen
/// (one plain go filled) credits to its module only what its go command
/// wrote or used, as the test's own walk finds them (new entries, and
/// entries whose mtime Go moved because they were over an hour old); the
/// rest is "(none recorded)".
#[test]
fn a_first_hook_credits_only_what_its_command_wrote_or_used() {
    let sb = Sandbox::with_template();
    // Over an hour old: Go moves the mtime of what it uses.
    backdate(&sb.cache(), Duration::from_secs(2 * 3600));
    let _ = std::fs::remove_dir_all(sb.cache().join("gocache"));
    let tiny = sb.write_main("tiny", "package main\n\nfunc main() {}\n");
    let before = entry_mtimes(&sb.cache());
    run_ok(
        sb.gocache(["go", "build", "-o", "/dev/null", "."])
            .current_dir(&tiny),
    );
    let after = entry_mtimes(&sb.cache());
    let did = touched(&before, &after);
    assert!(
        did.iter().any(|n| before.contains_key(n)) && did.iter().any(|n| !before.contains_key(n)),
        "the build both used old entries and made new ones"
    );
    let rest: Vec<&String> = after.keys().filter(|n| !did.contains(*n)).collect();
    assert!(rest.len() > 1000, "a cache of std: {}", rest.len());
    let (modules, none) = by_module(&sb);
    assert_eq!(
        modules,
        BTreeMap::from([(
            "example.com/tiny".to_string(),
            (did.len() as u64, du_of(&sb.cache(), &did))
        )])
    );
    assert_eq!(
        none,
        (rest.len() as u64, du_of(&sb.cache(), rest.iter().copied()))
    );
    let report = stdout_of(sb.gocache(["stats"]));
    let unrecorded = line(&report, "  (none recorded) ");
    assert!(
        unrecorded.contains(&format!(" {} ", grouped(rest.len() as u64))),
        "{unrecorded}"
    );
}

/// Two modules taking turns through the wrapper, with a
/// plain go command between them: each module holds exactly the entries
/// its own commands made (the test's walk before and after each), and
/// what the plain command made, which the next hook finds, is credited to
/// none.
#[test]
fn modules_taking_turns_hold_what_their_own_commands_made() {
    let sb = Sandbox::with_template();
    // Within the hour: Go moves no mtime, so "made" is "new".
    backdate(&sb.cache(), Duration::from_secs(600));
    let src = |pkg: &str, call: &str| {
        format!(
            "package main\n\nimport (\n\t\"fmt\"\n\t\"{pkg}\"\n)\n\nfunc main() {{ fmt.Println({call}) }}\n"
        )
    };
    let alpha = sb.write_main("alpha", &src("strings", "strings.ToUpper(\"a\")"));
    let beta = sb.write_main("beta", &src("net/url", "url.PathEscape(\"b c\")"));
    let gamma = sb.write_main("gamma", &src("strconv", "strconv.Itoa(3)"));
    let mut made: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut step = |module: Option<&'static str>, mut cmd: Command| {
        let before = entry_mtimes(&sb.cache());
        run_ok(&mut cmd);
        let did = touched(&before, &entry_mtimes(&sb.cache()));
        assert!(!did.is_empty(), "{cmd:?} made nothing");
        assert!(
            did.iter().all(|n| !before.contains_key(n)),
            "{cmd:?} moved an mtime"
        );
        if let Some(m) = module {
            made.entry(m).or_default().extend(did);
        }
    };
    let wrapped = |dir: &Path, args: &[&str]| {
        let mut c = sb.gocache(["go"]);
        c.args(args).current_dir(dir);
        c
    };
    let plain = |dir: &Path, args: &[&str]| {
        let mut c = sb.go(args);
        c.current_dir(dir);
        c
    };
    step(
        Some("example.com/alpha"),
        wrapped(&alpha, &["build", "-o", "/dev/null", "."]),
    );
    step(
        Some("example.com/beta"),
        wrapped(&beta, &["build", "-o", "/dev/null", "."]),
    );
    step(None, plain(&gamma, &["build", "-o", "/dev/null", "."]));
    sb.write_main("alpha", &src("strings", "strings.ToLower(\"A\")"));
    step(Some("example.com/alpha"), wrapped(&alpha, &["vet", "."]));
    step(
        Some("example.com/alpha"),
        wrapped(&alpha, &["build", "-o", "/dev/null", "."]),
    );
    sb.write_main("gamma", &src("strconv", "strconv.Itoa(4)"));
    step(None, plain(&gamma, &["vet", "."]));
    step(Some("example.com/beta"), wrapped(&beta, &["run", "."]));

    let all = entry_mtimes(&sb.cache());
    let want: BTreeMap<String, (u64, u64)> = made
        .iter()
        .map(|(m, names)| {
            (
                m.to_string(),
                (names.len() as u64, du_of(&sb.cache(), names)),
            )
        })
        .collect();
    let credited: BTreeSet<&String> = made.values().flatten().collect();
    let rest: Vec<&String> = all.keys().filter(|n| !credited.contains(n)).collect();
    let (modules, none) = by_module(&sb);
    assert_eq!(modules, want);
    assert_eq!(
        none,
        (rest.len() as u64, du_of(&sb.cache(), rest.iter().copied()))
    );
}

/// `stats --zero` forgets hit counts, saying how many.
#[test]
fn stats_zero_forgets_hits_and_says_how_many() {
    let sb = Sandbox::with_template();
    let dir = sb.root().join("work/hello");
    sb.write_hello("hello", "hello, world");
    for _ in 0..3 {
        run_ok(sb.gocache(["go", "run", "."]).current_dir(&dir));
    }
    let out = stdout_of(sb.gocache(["stats", "--zero"]));
    assert!(out.starts_with("forgot 3 hits of 1 entries in "), "{out}");
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    assert_eq!(s["hits_recorded"], false);
    let z = json(&run_ok(sb.gocache(["stats", "--zero", "--json"])));
    assert_eq!(
        z,
        serde_json::json!({"zeroed_entries": 0, "zeroed_hits": 0})
    );
}

/// `gocache dir` prints the cache (or the index), as
/// `uv cache dir` does, whether or not it exists yet.
#[test]
fn dir_prints_the_cache_and_the_index() {
    let sb = Sandbox::new();
    assert_eq!(
        stdout_of(sb.gocache(["dir"])),
        format!("{}\n", sb.cache().display())
    );
    assert_eq!(
        stdout_of(sb.gocache(["dir", "index"])),
        format!("{}\n", sb.index().display())
    );
    let other = sb.root().join("elsewhere.sqlite");
    assert_eq!(
        stdout_of(sb.gocache(["--index"]).arg(&other).args(["dir", "index"])),
        format!("{}\n", other.display())
    );
    let d = json(&run_ok(sb.gocache(["dir", "--json"])));
    assert_eq!(d["cache_dir"], sb.cache().display().to_string());
    assert_eq!(d["index"], sb.index().display().to_string());
    assert_eq!(d["source"], "$GOCACHE");
    assert_eq!(d["exists"], false);
    assert_eq!(
        d["config_file"],
        sb.root()
            .join("home/.config/gocache/config")
            .display()
            .to_string()
    );
    let out = stdout_of(sb.gocache(["dir"]).env_remove("GOCACHE"));
    assert_eq!(
        out,
        format!("{}\n", sb.root().join("home/.cache/go-build").display())
    );
    let out = sb.gocache(["dir"]).env("GOCACHE", "off").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `trim --json`'s plan keys bytes by rule in
/// `by_rule_bytes`, every rule present; `by_rule`, the list, stays for a
/// release.
#[test]
fn trim_json_keys_bytes_by_rule_and_keeps_the_old_list() {
    let sb = Sandbox::with_template();
    backdate(&sb.cache(), Duration::from_secs(3 * 86_400));
    let t = json(&run_ok(sb.gocache([
        "trim",
        "-n",
        "--json",
        "--exe-max-age",
        "1d",
    ])));
    let by = &t["plan"]["by_rule_bytes"];
    let keys: Vec<&str> = by.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "age",
            "budget",
            "exe_quota",
            "free_space",
            "garbage",
            "keep_runs"
        ]
    );
    assert!(by["age"]["entries"].as_u64().unwrap() >= 2, "{by:#}");
    assert_eq!(by["budget"]["entries"], 0);
    let list = t["plan"]["by_rule"].as_array().unwrap();
    for pair in list {
        assert_eq!(by[pair[0].as_str().unwrap()], pair[1], "{pair}");
    }
}

/// With no limit set, what is not met is a default age
/// rule, and stats names it, with where it came from, in the report and
/// in `--json` alike: `met` is false exactly when `unmet` lists something.
#[test]
fn stats_names_the_default_rule_that_is_not_met() {
    let sb = Sandbox::with_template();
    // Past Go's 5 days: both default age rules apply.
    backdate(&sb.cache(), Duration::from_secs(6 * 86_400));
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    let a = &s["against_limits"];
    assert_eq!(a["met"], false, "{a:#}");
    let unmet = a["unmet"].as_array().unwrap();
    let names: Vec<&str> = unmet.iter().map(|u| u["limit"].as_str().unwrap()).collect();
    assert_eq!(names, ["build_max_age", "exe_max_age"], "{a:#}");
    let exe = s["kinds"]["exe"]["allocated_bytes"].as_u64().unwrap();
    assert_eq!(unmet[1]["over_by"], exe, "every executable is past 2d");
    // What a dry run of trim would remove by age, counted by trim.
    let t = json(&run_ok(sb.gocache(["trim", "-n", "--json"])));
    assert_eq!(
        unmet[0]["over_by"].as_u64().unwrap() + exe,
        t["plan"]["by_rule_bytes"]["age"]["allocated_bytes"]
            .as_u64()
            .unwrap(),
        "{a:#}"
    );
    for u in unmet {
        assert_eq!(u["after_trim"], 0, "{u:#}");
        assert!(
            u["reason"].as_str().unwrap().contains("(the default"),
            "{u:#}"
        );
    }
    let report = stdout_of(sb.gocache(["stats"]));
    fits_80_columns("stats", &report);
    let limits = report
        .split("Limits       ")
        .nth(1)
        .unwrap_or_else(|| panic!("{report}"));
    assert!(
        limits.starts_with("not met: `gocache trim` would remove "),
        "{report}"
    );
    let flat = limits.split_whitespace().collect::<Vec<_>>().join(" ");
    for want in [
        "build max age 5d (the default, as Go): ",
        "exe max age 2d (the default; Go keeps them 5d): 2 entries",
        "unused for longer",
    ] {
        assert!(flat.contains(want), "{want:?} in\n{report}");
    }

    // Within the ages: met, and nothing listed.
    let sb = Sandbox::with_template();
    backdate(&sb.cache(), Duration::from_secs(3 * 3600));
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    assert_eq!(s["against_limits"]["met"], true, "{s:#}");
    assert_eq!(s["against_limits"]["unmet"], serde_json::json!([]));
    // A budget over now that a trim meets is listed too, with what is
    // over now and nothing after a trim; a stored one says so.
    run_ok(sb.gocache(["limits", "--budget", "1MiB"]));
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    let a = &s["against_limits"];
    let unmet = a["unmet"].as_array().unwrap();
    assert_eq!(unmet.len(), 1, "{a:#}");
    assert_eq!(unmet[0]["limit"], "budget");
    assert_eq!(
        unmet[0]["over_by"].as_u64().unwrap(),
        a["cache_bytes"].as_u64().unwrap() - (1 << 20),
        "{a:#}"
    );
    assert!(
        unmet[0]["reason"]
            .as_str()
            .unwrap()
            .contains("stored in the index"),
        "{a:#}"
    );
    let report = stdout_of(sb.gocache(["stats"]));
    assert!(
        report.contains("budget 1 MiB (stored in the index): "),
        "{report}"
    );
}
