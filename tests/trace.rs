//! Traces recorded from real go commands (`gocache go`, `gocache ci end`),
//! exported with `gocache trace export` and replayed by `gocache simulate`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::*;

/// Writes `files` (name, text) into `dir`, dated `ago` seconds back (so Go
/// caches its module index of them at once; see `Sandbox::write_main`),
/// each rewrite dated differently from the last.
fn write_files(dir: &Path, files: &[(&str, &str)], ago: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let when = std::time::SystemTime::now() - std::time::Duration::from_secs(ago);
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
}

fn app_main(greeting: &str) -> String {
    format!(
        "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/dep\"\n)\n\n\
         func main() {{ fmt.Println(dep.Greeting(), {greeting:?}) }}\n"
    )
}

fn dep_src(word: &str) -> String {
    format!("package dep\n\nfunc Greeting() string {{ return {word:?} }}\n")
}

/// The events of an exported trace, by `ev` and `kind`.
fn count(trace: &str, ev: &str, kind: &str) -> usize {
    trace
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["ev"] == ev && v["kind"].as_str().unwrap_or("action") == kind)
        .count()
}

fn index_count(sb: &Sandbox, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(sb.index()).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn a_trace_of_real_go_commands_replays_to_the_hits_that_happened() {
    let sb = Sandbox::with_template();
    // An index that knows the cache already (a first fill records no
    // events: it is not what go just did).
    run_ok(sb.gocache(["scan"]));
    let indexed = index_count(&sb, "SELECT count(*) FROM entries");
    let work = sb.root().join("work");
    let (dep, app, tool): (PathBuf, PathBuf, PathBuf) =
        (work.join("dep"), work.join("app"), work.join("tool"));
    write_files(
        &dep,
        &[
            ("go.mod", "module example.com/dep\n\ngo 1.24\n"),
            ("dep.go", &dep_src("hello")),
        ],
        300,
    );
    write_files(
        &app,
        &[
            (
                "go.mod",
                "module example.com/app\n\ngo 1.24\n\nrequire example.com/dep v0.0.0\n\n\
                 replace example.com/dep => ../dep\n",
            ),
            ("main.go", &app_main("main branch")),
        ],
        300,
    );
    sb.write_hello("tool", "generated");
    let svc = sb.write_main(
        "svc",
        "package main\n\nimport (\n\t\"encoding/json\"\n\t\"os\"\n)\n\n\
         func main() { json.NewEncoder(os.Stdout).Encode(map[string]int{\"ok\": 1}) }\n",
    );
    let go = |dir: &Path, args: &[&str]| {
        let mut a = vec!["go"];
        a.extend_from_slice(args);
        run_ok(sb.gocache(&a).current_dir(dir))
    };
    // The uses that actually happened, counted here: a `go run` of a
    // program the cache already held.
    let mut hits = 0;
    // Several modules built.
    go(&app, &["build", "./..."]);
    go(&svc, &["build", "./..."]);
    // A tool: built on its first run, cached on the next.
    go(&tool, &["run", "."]);
    go(&tool, &["run", "."]);
    hits += 1;
    // A branch switch: the app's files change.
    write_files(&app, &[("main.go", &app_main("feature branch"))], 200);
    go(&app, &["build", "./..."]);
    // A dependency bump: the local replace module changes.
    write_files(&dep, &[("dep.go", &dep_src("bonjour"))], 100);
    go(&app, &["build", "./..."]);
    let out = go(&app, &["run", "."]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "bonjour feature branch\n"
    );
    go(&app, &["run", "."]);
    hits += 1;
    go(&tool, &["run", "."]);
    hits += 1;
    // Back to the main branch: go finds it all cached (no new entries).
    write_files(&app, &[("main.go", &app_main("main branch"))], 50);
    go(&app, &["build", "./..."]);

    // The index's own count agrees: each `go run` is a hit there, the
    // first ones (which built the program) included.
    let exe_hits = index_count(
        &sb,
        "SELECT coalesce(sum(hits), 0) FROM entries WHERE kind = 2 AND hits > 0",
    );
    assert_eq!(exe_hits, hits + 2, "two go runs built their program");

    let path = sb.root().join("t.jsonl");
    let out = run_ok(sb.gocache([
        "trace",
        "export",
        "--since",
        "1h",
        "--json",
        "-o",
        path.to_str().unwrap(),
    ]));
    let summary = json(&out);
    let trace = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        summary["events"].as_u64().unwrap() as usize,
        trace.lines().count() - 1
    );
    assert!(
        trace
            .lines()
            .next()
            .unwrap()
            .contains("\"source\":\"hook\"")
    );
    // Every entry added since the scan (nothing was removed) is one `new`
    // event.
    let added = index_count(&sb, "SELECT count(*) FROM entries") - indexed;
    let news: usize = ["action", "output", "exe"]
        .iter()
        .map(|k| count(&trace, "new", k))
        .sum();
    assert_eq!(news as i64, added, "{trace}");
    assert_eq!(
        count(&trace, "new", "exe"),
        2,
        "the tool and the app: {}",
        trace
            .lines()
            .filter(|l| l.contains("exe"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(count(&trace, "use", "exe"), hits as usize);
    // Replayed with no budget to speak of, the trace hits where go did.
    let sim = json(&run_ok(
        sb.gocache(["simulate", path.to_str().unwrap(), "--json"])
            .args(["--budget", "1TiB", "--policy", "lru,gd-cost,belady"]),
    ));
    assert_eq!(sim["unbounded"]["hits"].as_i64(), Some(hits), "{sim:#}");
    assert_eq!(sim["trace"]["trace_hits"].as_i64(), Some(hits));
    assert_eq!(sim["trace"]["warm_hits"].as_i64(), Some(0));
    for r in sim["budgets"][0]["rows"].as_array().unwrap() {
        assert_eq!(r["hits"].as_i64(), Some(hits), "{r}");
    }
    // Every action go added is a lookup that missed.
    let misses = sim["trace"]["accesses"].as_i64().unwrap() - hits;
    assert_eq!(misses as usize, count(&trace, "new", "action"));

    // GOCACHE_TRACE=off records nothing more.
    let before = index_count(&sb, "SELECT count(*) FROM trace");
    write_files(&svc, &[("main.go", "package main\n\nfunc main() {}\n")], 20);
    run_ok(
        sb.gocache(["go", "build", "./..."])
            .current_dir(&svc)
            .env("GOCACHE_TRACE", "off"),
    );
    assert_eq!(index_count(&sb, "SELECT count(*) FROM trace"), before);
}

#[test]
fn ci_end_traces_what_the_run_used_and_made() {
    let sb = Sandbox::with_template();
    let app = sb.write_hello("app", "ci");
    let ci = |args: &[&str]| {
        let mut a = vec!["ci"];
        a.extend_from_slice(args);
        json(&run_ok(sb.gocache(&a)))
    };
    // Two runs with plain go, as CI runs it: the second finds the first's
    // entries (ci end moved their mtimes back, so go marks them used).
    ci(&["begin", "--json"]);
    run_ok(sb.go(["build", "./..."]).current_dir(&app));
    ci(&["end", "--json"]);
    let made = index_count(&sb, "SELECT count(*) FROM trace WHERE ev = 0");
    assert!(made > 0, "the first run's entries are new");
    ci(&["begin", "--json"]);
    run_ok(sb.go(["build", "./..."]).current_dir(&app));
    ci(&["end", "--json"]);
    let used = index_count(
        &sb,
        "SELECT count(*) FROM trace WHERE ev = 1 AND source = 1 AND kind = 0",
    );
    assert!(used > 0, "the second run's action hits are traced");
    // No new entries the second time, and each use is of an entry the
    // index knows.
    assert_eq!(
        index_count(&sb, "SELECT count(*) FROM trace WHERE ev = 0"),
        made
    );
    let trace = String::from_utf8(run_ok(sb.gocache(["trace", "export"])).stdout).unwrap();
    assert!(trace.lines().next().unwrap().contains("\"source\":\"ci\""));
    let path = sb.root().join("ci.jsonl");
    std::fs::write(&path, &trace).unwrap();
    let sim = json(&run_ok(sb.gocache([
        "simulate",
        path.to_str().unwrap(),
        "--json",
        "--budget",
        "1TiB",
        "--policy",
        "lru",
    ])));
    // Each action the second run found is a hit when replayed.
    assert_eq!(sim["unbounded"]["hits"].as_i64(), Some(used), "{sim:#}");
}
