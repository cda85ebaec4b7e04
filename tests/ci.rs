//! `gocache ci begin` / `gocache ci end`: simulated CI runs with the real
//! go command, real caches saved and restored with `tar`, and every figure
//! checked against the test's own walk of the cache.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::*;

/// An entry as a user's own walk of the cache sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct OnDisk {
    /// `st_blocks * 512`; an executable: its directory and its file.
    allocated: u64,
    mtime: i64,
}

type Walk = BTreeMap<String, OnDisk>;

fn is_entry_name(name: &str) -> bool {
    name.len() == 66
        && (name.ends_with("-a") || name.ends_with("-d"))
        && name[..64]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Every entry of the cache: `xx/<hex>-a` or `-d` to its size and mtime.
fn walk(cache: &Path) -> Walk {
    let mut out = Walk::new();
    for sub in 0..256 {
        let sub = format!("{sub:02x}");
        let Ok(rd) = std::fs::read_dir(cache.join(&sub)) else {
            continue;
        };
        for e in rd {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            if !is_entry_name(&name) || name[..2] != sub {
                continue;
            }
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            let mut allocated = md.blocks() * 512;
            if md.is_dir() {
                for inner in std::fs::read_dir(e.path()).unwrap() {
                    allocated += inner.unwrap().metadata().unwrap().blocks() * 512;
                }
            }
            out.insert(
                format!("{sub}/{name}"),
                OnDisk {
                    allocated,
                    mtime: md.mtime(),
                },
            );
        }
    }
    out
}

/// `(entries, allocated bytes)` of `names` as `walk` saw them.
fn count<'a>(walk: &Walk, names: impl IntoIterator<Item = &'a String>) -> (u64, u64) {
    names.into_iter().fold((0, 0), |(n, b), name| {
        (n + 1, b + walk.get(name).map_or(0, |e| e.allocated))
    })
}

/// `(entries, allocated_bytes)` of a JSON `Bytes`.
fn figures(v: &Value) -> (u64, u64) {
    (
        v["entries"].as_u64().unwrap(),
        v["allocated_bytes"].as_u64().unwrap(),
    )
}

fn names(w: &Walk) -> BTreeSet<String> {
    w.keys().cloned().collect()
}

/// Everything under `dir` (files, directories, itself), as `du` counts it.
fn du(dir: &Path) -> u64 {
    let md = std::fs::symlink_metadata(dir).unwrap();
    let mut total = md.blocks() * 512;
    if md.is_dir() {
        for e in std::fs::read_dir(dir).unwrap() {
            total += du(&e.unwrap().path());
        }
    }
    total
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Files dated a minute back (see `Sandbox::write_main`).
fn write_old(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    if std::fs::read_to_string(path).is_ok_and(|c| c == content) {
        return;
    }
    std::fs::write(path, content).unwrap();
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(past)
        .unwrap();
}

/// A small module: two library packages with tests, one of them using a
/// dependency (a module beside it, through a `replace` directive: no
/// network), and a tool run with `go run` that uses both.
fn write_app(sb: &Sandbox) -> PathBuf {
    let app = sb.root().join("work/app");
    write_old(
        &app.join("mathx/mathx.go"),
        "package mathx\n\n// Add adds.\nfunc Add(a, b int) int { return a + b }\n",
    );
    write_old(
        &app.join("mathx/mathx_test.go"),
        "package mathx\n\nimport \"testing\"\n\nfunc TestAdd(t *testing.T) {\n\tif Add(2, 3) != 5 {\n\t\tt.Fatal(\"bad\")\n\t}\n}\n",
    );
    write_old(
        &app.join("greet/greet.go"),
        "package greet\n\nimport \"example.com/dep\"\n\n// Hello greets, naming the dependency's version.\nfunc Hello() string { return \"hello from \" + dep.Version() }\n",
    );
    write_old(
        &app.join("greet/greet_test.go"),
        "package greet\n\nimport (\n\t\"strings\"\n\t\"testing\"\n)\n\nfunc TestHello(t *testing.T) {\n\tif !strings.HasPrefix(Hello(), \"hello from v\") {\n\t\tt.Fatal(Hello())\n\t}\n}\n",
    );
    write_old(
        &app.join("cmd/tool/main.go"),
        "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/app/greet\"\n\t\"example.com/app/mathx\"\n)\n\nfunc main() { fmt.Println(greet.Hello(), mathx.Add(1, 2)) }\n",
    );
    app
}

/// Points the module at version `v` of its dependency.
fn use_dep(sb: &Sandbox, v: u32) {
    let dep = sb.root().join(format!("work/dep-v{v}"));
    write_old(&dep.join("go.mod"), "module example.com/dep\n\ngo 1.24\n");
    write_old(
        &dep.join("dep.go"),
        &format!(
            "package dep\n\n// Version names this copy.\nfunc Version() string {{ return \"v{v}\" }}\n"
        ),
    );
    write_old(
        &sb.root().join("work/app/go.mod"),
        &format!(
            "module example.com/app\n\ngo 1.24\n\nrequire example.com/dep v0.0.0\n\nreplace example.com/dep => ../dep-v{v}\n"
        ),
    );
}

/// What a CI job runs, against the cache `cache`: build, vet, test and
/// the tool. Returns `go test`'s output.
fn go_job(sb: &Sandbox, app: &Path, cache: &Path, dep: u32) -> String {
    go_job_by(sb, app, cache, dep, false)
}

/// [`go_job`]; with `tool_later`, the tool runs in a later second than
/// the builds (a wait of at most a second), so that what it made is newer
/// than everything else the job made, by Go's whole-second mtimes.
fn go_job_by(sb: &Sandbox, app: &Path, cache: &Path, dep: u32, tool_later: bool) -> String {
    let go = |args: &[&str]| {
        let mut cmd = sb.go(args);
        cmd.current_dir(app).env("GOCACHE", cache);
        run_ok(cmd)
    };
    go(&["build", "./..."]);
    go(&["vet", "./..."]);
    let test = String::from_utf8(go(&["test", "./..."]).stdout).unwrap();
    if tool_later {
        let built = now();
        while now() <= built {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    let out = String::from_utf8(go(&["run", "./cmd/tool"]).stdout).unwrap();
    assert_eq!(out.trim(), format!("hello from v{dep} 3"));
    test
}

/// The packages `go test` took from the cache.
fn cached_tests(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.ends_with("(cached)"))
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect()
}

/// Saves the cache as `actions/cache` or a script would, with `tar`, in
/// GNU tar's default format (whole seconds) or POSIX's (nanoseconds).
fn save(sb: &Sandbox, archive: &Path, posix: bool) {
    let mut tar = Command::new("tar");
    if posix {
        tar.arg("--format=posix");
    }
    run_ok(
        tar.arg("-cf")
            .arg(archive)
            .arg("-C")
            .arg(sb.root())
            .arg("cache"),
    );
}

/// Restores a saved cache into a fresh directory, keeping mtimes.
fn restore(sb: &Sandbox, archive: &Path) {
    let _ = std::fs::remove_dir_all(sb.cache());
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(sb.root()),
    );
}

/// One CI job's observations.
struct Job {
    restored: Walk,
    begin: Value,
    after_go: Walk,
    end: Value,
    kept: Walk,
    tests_cached: Vec<String>,
    new_actions: BTreeSet<String>,
}

impl Job {
    /// What the job used or made, by the test's own walk: entries whose
    /// mtime moved past `used_after`, and new ones.
    fn touched(&self) -> BTreeSet<String> {
        let after = self.begin["used_after"].as_i64().unwrap();
        self.after_go
            .iter()
            .filter(|(n, e)| e.mtime > after || !self.restored.contains_key(*n))
            .map(|(n, _)| n.clone())
            .collect()
    }
}

/// A CI job: restore `archive`, `ci begin`, go, `ci end END_ARGS`, save.
fn ci_job(
    sb: &Sandbox,
    app: &Path,
    archive: &Path,
    dep: u32,
    end_args: &[&str],
    posix: bool,
) -> Job {
    ci_job_by(sb, app, archive, dep, end_args, posix, false)
}

/// [`ci_job`], its go commands run by [`go_job_by`] with `tool_later`.
fn ci_job_by(
    sb: &Sandbox,
    app: &Path,
    archive: &Path,
    dep: u32,
    end_args: &[&str],
    posix: bool,
    tool_later: bool,
) -> Job {
    restore(sb, archive);
    let restored = walk(&sb.cache());
    let label = format!("dep v{dep}");
    let begin = json(&run_ok(
        sb.gocache(["ci", "begin", "--json", "--label", &label]),
    ));
    use_dep(sb, dep);
    let test = go_job_by(sb, app, &sb.cache(), dep, tool_later);
    let after_go = walk(&sb.cache());
    // Go's own trim did not run: everything restored is still there, and
    // trim.txt says what ci begin wrote.
    for n in restored.keys() {
        assert!(after_go.contains_key(n), "{n} was removed during the job");
    }
    let trim_txt = std::fs::read_to_string(sb.cache().join("trim.txt")).unwrap();
    assert_eq!(
        trim_txt,
        begin["started"].to_string(),
        "Go trimmed the cache"
    );
    let mut end_cmd = sb.gocache(["ci", "end", "--json"]);
    end_cmd.args(end_args);
    let end = json(&run_ok(end_cmd));
    // The size ci end reports is what du finds once it has exited, and
    // "met" agrees with it.
    let on_disk = crate::support::du(&sb.cache());
    assert_eq!(end["cache_bytes"].as_u64(), Some(on_disk), "cache_bytes");
    if let Some(budget) = end["limits"]["budget"].as_u64() {
        let over: Vec<u64> = end["unmet"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["limit"] == "budget")
            .map(|u| u["over_by"].as_u64().unwrap())
            .collect();
        assert_eq!(
            over,
            (on_disk > budget)
                .then(|| on_disk - budget)
                .into_iter()
                .collect::<Vec<_>>()
        );
        if on_disk > budget {
            assert_eq!(end["limits_met"], false);
        }
    }
    let kept = walk(&sb.cache());
    save(sb, archive, posix);
    let new_actions = after_go
        .keys()
        .filter(|n| n.ends_with("-a") && !restored.contains_key(*n))
        .cloned()
        .collect();
    Job {
        restored,
        begin,
        after_go,
        end,
        kept,
        tests_cached: cached_tests(&test),
        new_actions,
    }
}

/// The same job against a cache nobody trims: one directory kept between
/// runs, Go's own trim held off.
fn untrimmed_job(
    sb: &Sandbox,
    app: &Path,
    cache: &Path,
    dep: u32,
) -> (Vec<String>, BTreeSet<String>) {
    std::fs::write(cache.join("trim.txt"), now().to_string()).unwrap();
    let before = walk(cache);
    use_dep(sb, dep);
    let test = go_job(sb, app, cache, dep);
    let new_actions = walk(cache)
        .into_keys()
        .filter(|n| n.ends_with("-a") && !before.contains_key(n))
        .collect();
    (cached_tests(&test), new_actions)
}

/// The outputs that the action entries among `names` name, where `walk`
/// has them (an action entry is `v1 <action> <output> ...`).
fn outputs_named(cache: &Path, names: &BTreeSet<String>, walk: &Walk) -> BTreeSet<String> {
    names
        .iter()
        .filter(|n| n.ends_with("-a"))
        .filter_map(|n| {
            let text = std::fs::read_to_string(cache.join(n)).ok()?;
            let out = text.split(' ').nth(2)?.to_string();
            let name = format!("{}/{out}-d", &out[..2]);
            walk.contains_key(&name).then_some(name)
        })
        .collect()
}

/// Two sets of names are the same; if not, says how they differ.
#[track_caller]
fn assert_same(got: &BTreeSet<String>, want: &BTreeSet<String>, what: &str) {
    let extra: Vec<&String> = got.difference(want).collect();
    let missing: Vec<&String> = want.difference(got).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "{what}: {} more than wanted (first {:?}), {} missing (first {:?})",
        extra.len(),
        &extra[..extra.len().min(5)],
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

/// The report's figures against the test's own walks.
fn assert_figures_match(job: &Job, k: usize) {
    let end = &job.end;
    let touched = job.touched();
    let used: Vec<&String> = touched
        .iter()
        .filter(|n| job.restored.contains_key(*n))
        .collect();
    let created: Vec<&String> = touched
        .iter()
        .filter(|n| !job.restored.contains_key(*n))
        .collect();
    let removed: Vec<&String> = job
        .after_go
        .keys()
        .filter(|n| !job.kept.contains_key(*n))
        .collect();
    let all_restored = count(&job.restored, job.restored.keys());
    assert_eq!(figures(&end["restored"]), all_restored, "run {k}: restored");
    assert_eq!(
        figures(&job.begin["restored"]["total"]),
        all_restored,
        "run {k}: ci begin's restored"
    );
    assert_eq!(
        figures(&end["used"]),
        count(&job.after_go, used.iter().copied()),
        "run {k}: used"
    );
    assert_eq!(
        figures(&end["created"]),
        count(&job.after_go, created.iter().copied()),
        "run {k}: created"
    );
    assert_eq!(
        figures(&end["removed"]),
        count(&job.after_go, removed.iter().copied()),
        "run {k}: removed"
    );
    assert_eq!(
        figures(&end["kept"]),
        count(&job.kept, job.kept.keys()),
        "run {k}: kept"
    );
    let share = end["used_share"].as_f64().unwrap();
    let want = count(&job.after_go, used.iter().copied()).1 as f64 / all_restored.1.max(1) as f64;
    assert!(
        (share - want).abs() < 1e-9,
        "run {k}: share {share} != {want}"
    );
}

/// Six CI runs of a module whose dependency changes every other run, each
/// restoring what the one before saved with `tar`, kept to what the last
/// two runs used, under a budget above the working set; beside them, the
/// same jobs on a cache nobody trims. Then a seventh run under a budget
/// below what the last two runs used.
#[test]
fn ci_runs_keep_what_the_last_runs_used_and_hit_like_an_untrimmed_cache() {
    let sb = Sandbox::new();
    let app = write_app(&sb);
    // The first job restores an image-style cache: 30-day-old mtimes, a
    // trim.txt two days old, no index.
    copy_tree(template_cache(), &sb.cache());
    backdate(&sb.cache(), std::time::Duration::from_secs(30 * 86_400));
    std::fs::write(
        sb.cache().join("trim.txt"),
        (now() - 2 * 86_400).to_string(),
    )
    .unwrap();
    let untrimmed = sb.root().join("untrimmed");
    copy_tree(&sb.cache(), &untrimmed);
    let archive = sb.root().join("saved.tar");
    save(&sb, &archive, false);

    let budget = 1u64 << 30;
    let end_args = ["--keep-runs", "2", "--budget", "1GiB"];
    let deps = [1, 1, 2, 2, 3, 3];
    let mut jobs: Vec<Job> = Vec::new();
    for (i, &dep) in deps.iter().enumerate() {
        let k = i + 1;
        let job = ci_job(&sb, &app, &archive, dep, &end_args, k % 2 == 0);
        let (plain_cached, plain_new) = untrimmed_job(&sb, &app, &untrimmed, dep);
        let (begin, end) = (&job.begin, &job.end);
        assert_eq!(begin["run"], k, "run {k}");
        assert_eq!(end["run"]["id"], k, "run {k}");
        if k == 1 {
            assert_eq!(begin["start"], "new");
            // One run so far: nothing is stale; the image survives whole.
            assert_eq!(end["keep_from"], Value::Null);
            assert_eq!(
                names(&job.kept),
                names(&job.after_go),
                "run 1 removed something"
            );
        } else {
            // Sealed by the last ci end, through tar (whole seconds or
            // nanoseconds): nothing to reread, nothing to move back.
            assert_eq!(begin["start"], "sealed", "run {k}");
            assert_eq!(begin["sealed_by"], k - 1, "run {k}");
            assert_eq!(begin["scan"]["rescanned"], serde_json::json!([]), "run {k}");
            assert_eq!(begin["moved_back"], 0, "run {k}");
        }
        assert_figures_match(&job, k);
        // Run k got exactly the hits an untrimmed cache gives.
        assert_eq!(job.tests_cached, plain_cached, "run {k}: test cache hits");
        assert_same(
            &job.new_actions,
            &plain_new,
            &format!("run {k}: build misses"),
        );
        if k >= 2 {
            // The saved cache holds what the last two runs used, and
            // nothing older.
            let last_two: BTreeSet<String> = job
                .touched()
                .union(&jobs[k - 2].touched())
                .cloned()
                .collect();
            let mut want: BTreeSet<String> = last_two
                .intersection(&names(&job.after_go))
                .cloned()
                .collect();
            // An output stays with an action that names it (Go may look an
            // action up without opening its output).
            want.extend(outputs_named(&sb.cache(), &want, &job.after_go));
            assert_same(&names(&job.kept), &want, &format!("run {k}: kept"));
            assert!(end["limits_met"].as_bool().unwrap());
            assert!(end["cache_bytes"].as_u64().unwrap() <= budget);
        }
        jobs.push(job);
    }
    // The runs with a new dependency version made what the earlier ones
    // then dropped: dep v1's entries were gone by the end of run 4.
    let v1_only: BTreeSet<String> = jobs[1]
        .touched()
        .difference(&jobs[3].touched())
        .cloned()
        .collect();
    assert!(!v1_only.is_empty());
    assert!(v1_only.iter().all(|n| !jobs[3].kept.contains_key(n)));
    assert!(
        jobs[3].end["removed_by_rule"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r[0] == "keep_runs")
    );

    // Run 7, with a new dependency and a budget below what runs 6 and 7
    // used: run 6's entries go first, run 7's all stay.
    restore(&sb, &archive);
    let restored = walk(&sb.cache());
    let begin = json(&run_ok(sb.gocache(["ci", "begin", "--json"])));
    use_dep(&sb, 4);
    go_job(&sb, &app, &sb.cache(), 4);
    let after_go = walk(&sb.cache());
    let used_after = begin["used_after"].as_i64().unwrap();
    let seventh: BTreeSet<String> = after_go
        .iter()
        .filter(|(n, e)| e.mtime > used_after || !restored.contains_key(*n))
        .map(|(n, _)| n.clone())
        .collect();
    let sixth_only: Vec<&String> = after_go.keys().filter(|n| !seventh.contains(*n)).collect();
    let (_, sixth_bytes) = count(&after_go, sixth_only.iter().copied());
    let tight = du(&sb.cache()) - sixth_bytes / 2;
    let summary = sb.root().join("summary.md");
    let end = json(&run_ok(
        sb.gocache([
            "ci",
            "end",
            "--json",
            "--keep-runs",
            "2",
            "--budget",
            &tight.to_string(),
        ])
        .env("GITHUB_STEP_SUMMARY", &summary),
    ));
    let kept = walk(&sb.cache());
    assert!(
        seventh.iter().all(|n| kept.contains_key(n)),
        "run 7 lost what it used"
    );
    assert!(kept.len() < after_go.len(), "nothing of run 6 went");
    let rules: Vec<&Value> = end["removed_by_rule"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r[0])
        .collect();
    assert!(rules.contains(&&Value::from("budget")), "{rules:?}");
    assert!(end["limits_met"].as_bool().unwrap(), "{end}");
    assert!(end["cache_bytes"].as_u64().unwrap() <= tight);
    // By du: ci end measures after it records the run.
    assert_eq!(end["cache_bytes"].as_u64(), Some(du(&sb.cache())));
    // The step summary: a table with the same figures, and bars.
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.starts_with("### Go build cache: run 7"), "{md}");
    let entries = |v: &Value| grouped(v["entries"].as_u64().unwrap());
    let restored_row = format!("| restored | {} |", entries(&end["restored"]));
    assert!(md.contains(&restored_row), "{md}");
    assert!(
        md.contains(&format!("| saved | {} |", entries(&end["kept"]))),
        "{md}"
    );
    assert!(md.contains('█'), "{md}");
    assert!(md.contains("of the restored bytes"), "{md}");
}

/// What a job used or made by the test's own walk: `after`'s entries
/// whose mtime is later than `used_after`, or that `before` lacked.
fn touched(before: &Walk, after: &Walk, used_after: i64) -> BTreeSet<String> {
    after
        .iter()
        .filter(|(n, e)| e.mtime > used_after || !before.contains_key(*n))
        .map(|(n, _)| n.clone())
        .collect()
}

/// Two jobs of a matrix take turns on one cache directory (a self-hosted
/// runner, or two configurations in one job), starting from an index made
/// before the CI mode; the second runs its tool through `gocache go`, whose
/// exact uses count too.
#[test]
fn two_jobs_take_turns_on_one_directory_from_an_index_made_before_the_ci_mode() {
    let sb = Sandbox::with_template();
    let app = write_app(&sb);
    use_dep(&sb, 1);
    run_ok(sb.gocache(["scan"]));
    let go = |args: &[&str]| {
        let mut cmd = sb.go(args);
        cmd.current_dir(&app);
        run_ok(cmd)
    };

    // Job A: the library's tests.
    let before_a = walk(&sb.cache());
    let a_begin = json(&run_ok(
        sb.gocache(["ci", "begin", "--json", "--label", "a"]),
    ));
    assert_eq!(
        a_begin["start"], "walked",
        "an index from before the CI mode"
    );
    go(&["test", "./mathx"]);
    let after_a = walk(&sb.cache());
    let a_end = json(&run_ok(sb.gocache(["ci", "end", "--json"])));
    let used_by_a = touched(&before_a, &after_a, a_begin["used_after"].as_i64().unwrap());
    assert!(!used_by_a.is_empty());

    // Job B, right after, in the same directory: the tool, through the
    // wrapper.
    let before_b = walk(&sb.cache());
    let b_begin = json(&run_ok(
        sb.gocache(["ci", "begin", "--json", "--label", "b"]),
    ));
    assert_eq!(b_begin["start"], "sealed");
    assert_eq!(b_begin["sealed_by"], 1);
    assert_eq!(b_begin["scan"]["rescanned"], serde_json::json!([]));
    assert_eq!(b_begin["moved_back"], 0);
    assert_eq!(b_begin["restored"]["total"], a_end["kept"]);
    let out = run_ok(sb.gocache(["go", "run", "./cmd/tool"]).current_dir(&app));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hello from v1 3"
    );
    let after_b = walk(&sb.cache());
    let b_end = json(&run_ok(sb.gocache(["ci", "end", "--json"])));
    let used_by_b = touched(&before_b, &after_b, b_begin["used_after"].as_i64().unwrap());
    let kept = names(&walk(&sb.cache()));
    // Both jobs' entries stay (the default keeps ten runs).
    assert!(used_by_a.iter().all(|n| kept.contains(n)));
    assert!(used_by_b.iter().all(|n| kept.contains(n)));
    assert_eq!(b_end["keep_from"], Value::Null);
    // What A made, B found restored; what both need (std), B used.
    let made_by_a: Vec<&String> = used_by_a
        .iter()
        .filter(|n| !before_a.contains_key(*n))
        .collect();
    assert!(made_by_a.iter().all(|n| before_b.contains_key(*n)));
    assert!(b_end["used"]["entries"].as_u64().unwrap() > 0);
    let programs = b_end["largest_programs"].as_array().unwrap();
    let tool = programs.iter().find(|p| p["program"] == "tool").unwrap();
    assert_eq!(tool["used"], true);
    let hello = programs.iter().find(|p| p["program"] == "hello").unwrap();
    assert_eq!(hello["used"], false, "the template's, no job ran it");
    assert!(
        tool["hits"].as_u64().unwrap() >= 1,
        "the wrapper's exact use: {tool}"
    );

    // A third job that uses nothing, keeping one run: everything goes,
    // though the earlier jobs used it minutes ago (the grace period
    // protects only what the ending run used).
    run_ok(sb.gocache(["ci", "begin"]));
    let c_end = json(&run_ok(sb.gocache([
        "ci",
        "end",
        "--json",
        "--keep-runs",
        "1",
    ])));
    assert_eq!(c_end["kept"]["entries"], 0, "{c_end}");
    assert_eq!(walk(&sb.cache()).len(), 0);
    assert_eq!(c_end["removed_by_rule"][0][0], "keep_runs");
}

/// `(entries, allocated bytes)` of each module `stats --json` lists, by
/// module path, and of the entries credited to none.
fn by_module(sb: &Sandbox) -> (BTreeMap<String, (u64, u64)>, (u64, u64)) {
    let s = json(&run_ok(sb.gocache(["stats", "--json"])));
    let modules = s["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["path"].as_str().unwrap().to_string(), figures(m)))
        .collect();
    (modules, figures(&s["modules_unrecorded"]))
}

/// Two CI jobs on a restored cache that plain go filled,
/// each with a plain go command and then one through `gocache go`. A
/// module holds exactly what its wrapped command made (the test's walk
/// before and after it); what was restored, what the plain commands made
/// (which the wrapped command's hook finds) and what the wrapped ones only
/// used are credited to none.
#[test]
fn ci_jobs_credit_a_module_only_with_what_its_wrapped_commands_made() {
    let sb = Sandbox::with_template();
    let archive = sb.root().join("cache.tar");
    let app = write_app(&sb);
    use_dep(&sb, 1);
    let tiny = sb.write_main("tiny", "package main\n\nfunc main() {}\n");
    let mut made: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut job = |module: &'static str, dir: &Path, wrapped: &[&str], plain: &[&str]| {
        run_ok(sb.gocache(["ci", "begin"]));
        // The plain command first: the wrapped one's hook finds what it
        // made.
        let before = walk(&sb.cache());
        run_ok(sb.go(plain).current_dir(&app));
        assert!(
            walk(&sb.cache()).len() > before.len(),
            "plain go made nothing"
        );
        let before = walk(&sb.cache());
        run_ok(sb.gocache(["go"]).args(wrapped).current_dir(dir));
        let after = walk(&sb.cache());
        let new: BTreeSet<String> = after
            .keys()
            .filter(|n| !before.contains_key(*n))
            .cloned()
            .collect();
        assert!(!new.is_empty());
        made.entry(module).or_default().extend(new);
        run_ok(sb.gocache(["ci", "end"]));
        save(&sb, &archive, true);
        restore(&sb, &archive);
        let kept = walk(&sb.cache());
        let want: BTreeMap<String, (u64, u64)> = made
            .iter()
            .map(|(m, names)| {
                let names = names.iter().filter(|n| kept.contains_key(*n));
                (m.to_string(), count(&kept, names))
            })
            .collect();
        let credited: BTreeSet<&String> = made.values().flatten().collect();
        let rest = kept.keys().filter(|n| !credited.contains(n));
        assert_eq!(by_module(&sb), (want, count(&kept, rest)));
    };
    job(
        "example.com/app",
        &app,
        &["build", "./..."],
        &["vet", "./..."],
    );
    job(
        "example.com/tiny",
        &tiny,
        &["build", "-o", "/dev/null", "."],
        &["test", "./..."],
    );
}

/// `ci end --budget 0B` after a job. What the run did
/// not use goes in a first round and a second finds nothing more: the
/// report still says what went by which rule, names what is left with its
/// bytes, and its text groups the counts and names the whole directory as
/// `du` counts it.
#[test]
fn ci_end_under_a_budget_it_cannot_meet_reports_every_rounds_removals() {
    let sb = Sandbox::with_template();
    let job = sb.write_hello("job", "the job");
    run_ok(sb.gocache(["ci", "begin"]));
    run_ok(sb.go(["build", "-o", "/dev/null", "."]).current_dir(&job));
    let twin = sb.root().join("twin");
    copy_tree(&sb.cache(), &twin);
    let before = walk(&sb.cache());
    let end = json(&run_ok(
        sb.gocache(["ci", "end", "--json", "--budget", "0B"]),
    ));
    let after = walk(&sb.cache());
    let removed: Vec<&String> = before.keys().filter(|n| !after.contains_key(*n)).collect();
    assert!(removed.len() > 1000 && !after.is_empty(), "{end:#}");
    let gone = count(&before, removed.iter().copied());
    assert_eq!(figures(&end["removed"]), gone);
    let by_rule = end["removed_by_rule"].as_array().unwrap();
    let summed = by_rule.iter().fold((0, 0), |(n, b), r| {
        let (rn, rb) = figures(&r[1]);
        (n + rn, b + rb)
    });
    assert_eq!(summed, gone, "{by_rule:#?}");
    assert_eq!(end["limits_met"], false);
    let kept = count(&after, after.keys()).1;
    let reason = end["unmet"][0]["reason"].as_str().unwrap();
    let human = |b: u64| humansize::format_size(b, humansize::BINARY);
    assert!(
        reason.starts_with(&format!(
            "what is left is {} of entries used within the grace period and ",
            human(kept)
        )),
        "{reason}"
    );

    let out = run_ok(
        sb.gocache(["ci", "end", "--budget", "0B"])
            .env("GOCACHE", &twin),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(walk(&twin).len(), after.len(), "the same ci end");
    let row = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("  {name} ")))
            .unwrap_or_else(|| panic!("no {name} row in\n{text}"))
            .to_string()
    };
    let n = grouped(removed.len() as u64);
    let removed_row = row("removed");
    assert!(removed_row.contains(&format!(" {n} ")), "{text}");
    assert!(removed_row.ends_with(&format!("budget: {n}")), "{text}");
    assert!(
        row("saved").ends_with(&format!(
            "whole directory {}, as du counts it",
            human(crate::support::du(&twin))
        )),
        "{text}"
    );
}

/// The first run of a repository: nothing is restored, so there is no
/// cache directory yet.
#[test]
fn a_job_that_restored_nothing_starts_a_new_cache() {
    let sb = Sandbox::new();
    let app = sb.write_hello("hello", "hi");
    assert!(!sb.cache().exists());
    let begin = json(&run_ok(sb.gocache(["ci", "begin", "--json"])));
    assert_eq!(begin["created_cache_dir"], true);
    assert_eq!(begin["start"], "new");
    assert_eq!(begin["restored"]["total"]["entries"], 0);
    run_ok(sb.go(["build", "fmt"]).current_dir(&app));
    let end = json(&run_ok(sb.gocache(["ci", "end", "--json"])));
    let kept = walk(&sb.cache());
    assert_eq!(figures(&end["created"]), count(&kept, kept.keys()));
    assert_eq!(end["used"]["entries"], 0);
    assert_eq!(end["used_share"], 0.0);
    // Without a ci begin, ci end still works, and says what it cannot do.
    let out = run_ok(sb.gocache(["ci", "end"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no ci begin was recorded"));
}

/// A table of `n` numbers for a dependency's package: a few hundred KiB of
/// compiled output that no program links (dead code), so that the
/// package is big and the executables are not.
fn write_table(sb: &Sandbox, v: u32, n: usize) {
    let mut src =
        format!("package dep\n\n// Table is version {v}'s table.\nvar Table = [...]uint64{{\n");
    for i in 0..n {
        src.push_str(&format!(
            "\t{},\n",
            (i as u64 + 1) * 2_654_435_761 + u64::from(v)
        ));
    }
    src.push_str("}\n");
    write_old(&sb.root().join(format!("work/dep-v{v}/table.go")), &src);
}

/// The programs named `name` that a `ci end` report lists as kept.
fn programs_named<'a>(end: &'a Value, name: &str) -> Vec<&'a Value> {
    end["largest_programs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["program"] == name)
        .collect()
}

/// `ci end --policy gdsf` with the real go: three runs through `tar`, the
/// dependency bumped each run, and at the third a budget below what the
/// last two runs used. The runs rule comes first under both orders, the
/// budget is met, the next run builds and hits; and within the older run
/// the order differs as the policies say: `lru` takes that run's entries
/// in the order it used them, so its newest (the `go run` tool it linked
/// last) stays, while `gdsf`, with no hits counted (`ci end` counts none
/// under plain go: GreedyDual-Size), takes the biggest group first, which
/// is that tool's executable.
#[test]
fn ci_end_policy_gdsf_keeps_the_runs_rule_and_meets_the_budget_by_evicting_the_biggest_first() {
    let sb = Sandbox::new();
    let app = write_app(&sb);
    copy_tree(template_cache(), &sb.cache());
    backdate(&sb.cache(), std::time::Duration::from_secs(30 * 86_400));
    let archive = sb.root().join("saved.tar");
    save(&sb, &archive, false);
    for v in 1..=3 {
        write_table(&sb, v, 20_000);
    }
    let keep = ["--keep-runs", "2"];
    let one = ci_job(&sb, &app, &archive, 1, &keep, false);
    // Run 2 links its tool a second after its builds: lru's order within
    // the run is by whole seconds.
    let two = ci_job_by(&sb, &app, &archive, 2, &keep, true, true);
    assert!(two.end["limits_met"].as_bool().unwrap());

    // Run 3, by hand: the same ci end on three copies of the cache (index
    // included) as go left it.
    restore(&sb, &archive);
    let begin = json(&run_ok(sb.gocache(["ci", "begin", "--json"])));
    assert_eq!(begin["run"], 3);
    use_dep(&sb, 3);
    go_job(&sb, &app, &sb.cache(), 3);
    let after_go = walk(&sb.cache());
    let used_after = begin["used_after"].as_i64().unwrap();
    let third: BTreeSet<String> = after_go
        .iter()
        .filter(|(n, e)| e.mtime > used_after || !two.kept.contains_key(*n))
        .map(|(n, _)| n.clone())
        .collect();
    // An output leaves with the last action naming it: what the later
    // runs' actions name stays with them.
    let later: BTreeSet<String> = two.touched().union(&third).cloned().collect();
    let named_later = outputs_named(&sb.cache(), &later, &after_go);
    let named_third = outputs_named(&sb.cache(), &third, &after_go);
    let first_only: BTreeSet<String> = one
        .touched()
        .difference(&later)
        .filter(|n| after_go.contains_key(*n) && !named_later.contains(*n))
        .cloned()
        .collect();
    assert!(!first_only.is_empty(), "dep v1's entries");
    // What only run 2 used, with the times run 2 used it (ci end has moved
    // them back since; the index keeps the real last use).
    let second_only: BTreeMap<String, OnDisk> = two
        .after_go
        .iter()
        .filter(|(n, _)| {
            two.touched().contains(*n)
                && !third.contains(*n)
                && !named_third.contains(*n)
                && after_go.contains_key(*n)
        })
        .map(|(n, e)| (n.clone(), *e))
        .collect();
    let newest = second_only.values().map(|e| e.mtime).max().unwrap();
    let (older, newer): (Vec<&String>, Vec<&String>) = second_only
        .keys()
        .partition(|n| second_only[*n].mtime < newest);
    let (_, older_bytes) = count(&after_go, older.iter().copied());
    let biggest = second_only
        .keys()
        .max_by_key(|n| after_go[*n].allocated)
        .unwrap();
    assert!(
        newer.contains(&biggest),
        "run 2's tool, linked last, is its biggest entry: {biggest}"
    );
    assert!(
        after_go[biggest].allocated > older_bytes,
        "{biggest}: {} <= {older_bytes}",
        after_go[biggest].allocated
    );

    let end_on = |cache: &Path, args: &[&str]| {
        let mut c = sb.gocache(["ci", "end", "--json", "--keep-runs", "2"]);
        c.args(args).env("GOCACHE", cache);
        json(&run_ok(c))
    };
    // The probe: what the runs rule alone leaves.
    let probe = sb.root().join("probe");
    copy_tree(&sb.cache(), &probe);
    let alone = end_on(&probe, &[]);
    assert_eq!(alone["removed_by_rule"][0][0], "keep_runs", "{alone}");
    let budget = alone["cache_bytes"].as_u64().unwrap() - older_bytes / 2;
    let budget_arg = budget.to_string();
    let lru_cache = sb.root().join("lru");
    copy_tree(&sb.cache(), &lru_cache);
    let lru = end_on(&lru_cache, &["--budget", &budget_arg, "--policy", "lru"]);
    let gdsf = end_on(&sb.cache(), &["--budget", &budget_arg, "--policy", "gdsf"]);
    save(&sb, &archive, true);

    for (name, end, cache) in [("lru", &lru, &lru_cache), ("gdsf", &gdsf, &sb.cache())] {
        assert_eq!(end["limits"]["policy"], name, "{end}");
        // The runs rule first, and the same under both.
        let rules = end["removed_by_rule"].as_array().unwrap();
        assert_eq!(
            (&rules[0], &rules[1][0]),
            (&alone["removed_by_rule"][0], &"budget".into()),
            "{name}: {end}"
        );
        let kept = walk(cache);
        assert!(
            first_only.iter().all(|n| !kept.contains_key(n)),
            "{name}: dep v1's entries stayed"
        );
        assert!(
            third.iter().all(|n| kept.contains_key(n)),
            "{name}: run 3 lost what it used"
        );
        // The budget is met, also by du.
        assert!(end["limits_met"].as_bool().unwrap(), "{name}: {end}");
        assert!(end["cache_bytes"].as_u64().unwrap() <= budget, "{name}");
        assert!(du(cache) <= budget + (256 << 10), "{name}");
    }
    // Within run 2: lru kept what run 2 used last (its tool, listed as
    // kept and unused), gdsf took the biggest (that tool) and left the
    // small ones lru took.
    let (lru_kept, gdsf_kept) = (walk(&lru_cache), walk(&sb.cache()));
    assert!(newer.iter().all(|n| lru_kept.contains_key(*n)), "{lru}");
    assert!(older.iter().any(|n| !lru_kept.contains_key(*n)), "{lru}");
    assert!(!gdsf_kept.contains_key(biggest), "{gdsf}");
    assert!(older.iter().all(|n| gdsf_kept.contains_key(*n)), "{gdsf}");
    assert_eq!(programs_named(&lru, "tool").len(), 2, "{lru}");
    let tools = programs_named(&gdsf, "tool");
    assert_eq!(tools.len(), 1, "{gdsf}");
    assert_eq!(tools[0]["used"], true);
    // gdsf's clock, for the next trim's priorities, is in the index.
    let conn = rusqlite::Connection::open(sb.index()).unwrap();
    let clock: String = conn
        .query_row("SELECT value FROM meta WHERE key = 'gdsf_clock'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(clock.starts_with("[["), "{clock}");
    drop(conn);

    // Run 4 on what gdsf saved builds, and hits everything run 3 made.
    let four = ci_job(&sb, &app, &archive, 3, &keep, false);
    assert_eq!(four.begin["start"], "sealed");
    assert_eq!(
        four.tests_cached,
        ["example.com/app/greet", "example.com/app/mathx"]
    );
    assert_same(&four.new_actions, &BTreeSet::new(), "run 4: build misses");
}

/// Every line `ci begin` prints fits 80 columns, whatever it has to say
/// (a long label, a month-old trim.txt, a sealed index, a run that never
/// ended); and the step summary's count beside "used by this run" says
/// what it counts: a program plain go ran is used, and never counted by
/// `gocache go`.
#[test]
fn ci_begin_fits_80_columns_and_the_summary_names_what_it_counts() {
    let sb = Sandbox::with_template();
    let app = sb.write_hello("counted", "counted");
    // A label that fits a line, and one that cannot.
    let label = "nightly/build-and-test-everything@feature/a-long-branch";
    let longer = format!("{}/{label}", "x".repeat(40));
    std::fs::write(
        sb.cache().join("trim.txt"),
        format!("{}", now() - 30 * 86_400),
    )
    .unwrap();
    let mut lines = Vec::new();
    let mut begin = |label: &str| {
        let out = run_ok(sb.gocache(["ci", "begin", "--label", label]));
        lines.extend(
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(str::to_string),
        );
    };
    begin(label);
    run_ok(sb.go(["run", "."]).current_dir(&app));
    let summary = sb.root().join("summary.md");
    run_ok(
        sb.gocache(["ci", "end"])
            .env("GITHUB_STEP_SUMMARY", &summary),
    );
    begin(label); // sealed by the end before
    begin(&longer); // the run before never ended
    let all = lines.join("\n");
    for l in &lines {
        assert!(
            l.chars().count() <= 80,
            "{} columns: {l}\n{all}",
            l.chars().count()
        );
    }
    for said in ["30d", "sealed", "never ended", label] {
        assert!(
            all.replace('\n', " ").contains(said),
            "{said:?} not in\n{all}"
        );
    }
    let md = std::fs::read_to_string(&summary).unwrap();
    let header = md
        .lines()
        .find(|l| l.starts_with("| largest programs"))
        .unwrap_or_else(|| panic!("no programs table: {md}"));
    assert!(!header.contains("runs counted"), "{header}");
    assert!(header.contains("gocache go"), "{header}");
    let row: Vec<&str> = md
        .lines()
        .find(|l| l.starts_with("| `counted`"))
        .unwrap_or_else(|| panic!("no row for counted: {md}"))
        .split('|')
        .map(str::trim)
        .collect();
    assert_eq!((row[3], row[4]), ("yes", "0"), "{md}");
}

/// `ci end`'s report fits 80 columns with no blanks at the ends of its
/// lines, met or not (an unmet budget says why at length).
#[test]
fn ci_end_fits_80_columns_met_or_not() {
    let sb = Sandbox::with_template();
    let app = sb.write_hello("fits", "fits");
    for budget in ["2GiB", "1MiB"] {
        run_ok(sb.gocache(["ci", "begin"]));
        run_ok(sb.go(["build", "-o", "/dev/null", "."]).current_dir(&app));
        let out = sb
            .gocache(["ci", "end", "--budget", budget])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let said = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let unmet = budget == "1MiB";
        assert_eq!(said.contains("budget 1 MiB not met"), unmet, "{text}");
        assert_eq!(said.contains("budget 2 GiB met"), !unmet, "{text}");
        for l in text.lines() {
            assert!(
                l.chars().count() <= 80,
                "{} columns: {l}\n{text}",
                l.chars().count()
            );
            assert_eq!(l, l.trim_end(), "blanks at the end: {l:?}\n{text}");
        }
    }
}
