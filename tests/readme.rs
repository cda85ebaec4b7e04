//! The README documents the JSON each command prints; these tests keep the
//! tables and the output in step (every field printed is documented, and
//! every documented field is printed).

use std::collections::BTreeSet;

use crate::support::*;

/// The field names in the first column of the table that follows the line
/// `heading` in the README: `` `a`, `b[]` `` gives a and b.
fn documented_fields(heading: &str) -> BTreeSet<String> {
    let readme = include_str!("../README.md");
    let start = readme
        .lines()
        .position(|l| l == heading)
        .unwrap_or_else(|| panic!("no line {heading:?} in the README"));
    readme
        .lines()
        .skip(start + 1)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // the header and the |---| line
        .flat_map(|row| {
            let first = row.split('|').nth(1).unwrap_or_default();
            // `kinds.{action,output,exe}` documents the top-level `kinds`.
            let mut plain = String::new();
            let mut depth = 0;
            for c in first.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    c if depth == 0 => plain.push(c),
                    _ => {}
                }
            }
            plain
                .split(',')
                .map(|f| {
                    let f = f.trim().trim_matches('`').trim_end_matches("[]");
                    f.split('.').next().unwrap_or_default().to_string()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn keys(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn the_json_of_scan_limits_and_hook_is_documented_field_by_field() {
    let sb = Sandbox::with_template();
    let scan = json(&run_ok(sb.gocache(["scan", "--json"])));
    assert_eq!(keys(&scan), documented_fields("`scan --json`:"));
    let limits = json(&run_ok(sb.gocache([
        "limits",
        "--json",
        "--budget",
        "10GiB",
        "--exe-quota",
        "5%",
        "--min-free",
        "1G",
        "--build-max-age",
        "off",
        "--exe-max-age",
        "1d",
        "--grace",
        "2h",
        "--policy",
        "gdsf",
    ])));
    assert_eq!(keys(&limits), documented_fields("`limits --json`:"));
    // Every limit appears in both, as the table says.
    let all: BTreeSet<String> = [
        "budget",
        "exe_quota",
        "min_free",
        "build_max_age",
        "exe_max_age",
        "grace",
        "policy",
    ]
    .map(String::from)
    .into();
    assert_eq!(keys(&limits["stored"]), all);
    assert_eq!(keys(&limits["effective"]), all);
    assert_eq!(limits["stored"]["budget"]["bytes"], 10u64 << 30);
    assert_eq!(limits["stored"]["exe_quota"]["percent"], 5.0);
    assert_eq!(limits["stored"]["build_max_age"], "off");
    assert_eq!(limits["stored"]["exe_max_age"]["secs"], 86400);
    assert_eq!(limits["stored"]["grace"], 7200);
    assert_eq!(limits["stored"]["policy"], "gdsf");
    assert_eq!(
        limits["effective"]["build_max_age"],
        serde_json::Value::Null
    );
    let hook = json(&run_ok(sb.gocache(["hook", "--json"])));
    assert_eq!(keys(&hook), documented_fields("`hook --json`:"));
    let dir = json(&run_ok(sb.gocache(["dir", "--json"])));
    assert_eq!(keys(&dir), documented_fields("`dir --json`:"));
}

#[test]
fn the_json_of_stats_is_documented_field_by_field() {
    let sb = Sandbox::with_template();
    let stats = json(&run_ok(sb.gocache(["stats", "--json"])));
    // index_problem is there (null) when the index is fine, and documented
    // with index_mode.
    let mut printed = keys(&stats);
    printed.remove("index_problem");
    assert_eq!(printed, documented_fields("### `stats --json`"));
    let exe = stats["largest_exes"][0].as_object().unwrap();
    for field in [
        "program",
        "import_path",
        "entry",
        "apparent_bytes",
        "allocated_bytes",
        "last_use",
        "hits",
    ] {
        assert!(exe.contains_key(field), "{field}");
    }
    let against: std::collections::BTreeSet<String> = keys(&stats["against_limits"]);
    let documented: std::collections::BTreeSet<String> = [
        "cache_bytes",
        "budget_share",
        "exe_bytes",
        "exe_quota_share",
        "free_bytes",
        "met",
        "trim_would_remove",
        "unmet",
    ]
    .map(String::from)
    .into();
    assert_eq!(against, documented);
}

#[test]
fn the_json_of_ci_begin_and_ci_end_is_documented_field_by_field() {
    let sb = Sandbox::with_template();
    let begin = json(&run_ok(sb.gocache(["ci", "begin", "--json"])));
    assert_eq!(keys(&begin), documented_fields("`ci begin --json`:"));
    let end = json(&run_ok(
        sb.gocache(["ci", "end", "--json", "--budget", "1GiB"]),
    ));
    assert_eq!(keys(&end), documented_fields("`ci end --json`:"));
    assert_eq!(
        keys(&end["run"]),
        ["id", "label", "seconds", "started"]
            .map(String::from)
            .into()
    );
}

/// The flags `gocache ci SUB --help` lists.
fn ci_flags(sb: &Sandbox, sub: &str) -> BTreeSet<String> {
    let out = run_ok(sb.gocache(["ci", sub, "--help"]));
    String::from_utf8_lossy(&out.stdout)
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_string()
        })
        .collect()
}

/// Every `--flag` in `line` after `gocache ci SUB` (or in an
/// `args=(ci SUB` / `args+=(` line of a script), with SUB.
fn flags_used(line: &str) -> Option<(String, Vec<String>)> {
    let words: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == '"')
        .filter(|w| !w.is_empty())
        .collect();
    let at = words
        .windows(2)
        .position(|w| w[0] == "ci" && (w[1] == "begin" || w[1] == "end"))?;
    let flags = words[at..]
        .iter()
        .filter(|w| w.starts_with("--"))
        .map(|w| w.to_string())
        .collect();
    Some((words[at + 1].to_string(), flags))
}

/// The README's yaml blocks and `action.yml` parse as YAML, the workflow
/// follows the rules the README gives (setup-go's own cache off, a new
/// key every run restored by prefix, end and save always), and every flag
/// they pass to `gocache ci` exists.
#[test]
fn the_ci_recipes_and_the_action_are_valid_and_use_flags_gocache_has() {
    use yaml_rust2::{Yaml, YamlLoader};
    let sb = Sandbox::new();
    let flags = |sub: &str| ci_flags(&sb, sub);
    let (begin_flags, end_flags) = (flags("begin"), flags("end"));
    let check_flags = |text: &str, what: &str| {
        let mut seen = 0;
        for line in text.lines() {
            let Some((sub, used)) = flags_used(line) else {
                continue;
            };
            seen += 1;
            let known = if sub == "begin" {
                &begin_flags
            } else {
                &end_flags
            };
            for f in used {
                assert!(
                    known.contains(&f),
                    "{what}: `gocache ci {sub}` has no {f}: {line}"
                );
            }
        }
        seen
    };

    let readme = include_str!("../README.md");
    let blocks: Vec<&str> = readme
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    let docs: Vec<Yaml> = blocks
        .iter()
        .map(|b| {
            let mut d = YamlLoader::load_from_str(b).unwrap_or_else(|e| panic!("{e}:\n{b}"));
            d.remove(0)
        })
        .collect();
    assert!(
        !readme.contains("key: go-build-${{ hashFiles"),
        "the old snippet is back"
    );
    // The GitHub Actions recipe.
    let steps = docs
        .iter()
        .find_map(|d| d["jobs"]["test"]["steps"].as_vec())
        .expect("a workflow in the README");
    let step = |uses: &str| {
        steps
            .iter()
            .position(|s| s["uses"].as_str().is_some_and(|u| u.starts_with(uses)))
            .unwrap_or_else(|| panic!("no {uses} step"))
    };
    let run_at = |cmd: &str| {
        steps
            .iter()
            .position(|s| s["run"].as_str().is_some_and(|r| r.starts_with(cmd)))
            .unwrap_or_else(|| panic!("no `{cmd}` step"))
    };
    assert_eq!(
        steps[step("actions/setup-go")]["with"]["cache"],
        Yaml::Boolean(false)
    );
    let (restore, save) = (
        &steps[step("actions/cache/restore")],
        &steps[step("actions/cache/save")],
    );
    let key = restore["with"]["key"].as_str().unwrap();
    assert!(key.contains("${{ github.run_id }}"), "{key}");
    assert!(key.starts_with(restore["with"]["restore-keys"].as_str().unwrap()));
    assert_eq!(save["with"]["key"].as_str(), Some(key));
    assert_eq!(save["if"].as_str(), Some("always()"));
    let (begin, test, end) = (
        run_at("gocache ci begin"),
        run_at("go test"),
        run_at("gocache ci end"),
    );
    assert!(step("actions/cache/restore") < begin && begin < test && test < end);
    assert!(end < step("actions/cache/save"));
    assert_eq!(steps[end]["if"].as_str(), Some("always()"));
    // The GitLab one.
    let gitlab = docs
        .iter()
        .find(|d| !d["test"]["cache"].is_badvalue())
        .expect("a .gitlab-ci.yml in the README");
    assert_eq!(gitlab["test"]["cache"]["when"].as_str(), Some("always"));
    assert!(check_flags(blocks.join("\n").as_str(), "README") >= 4);

    // The composite action.
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/action.yml")).unwrap();
    let action = YamlLoader::load_from_str(&text).unwrap().remove(0);
    assert_eq!(action["runs"]["using"].as_str(), Some("composite"));
    let inputs = action["inputs"].as_hash().unwrap();
    for word in text.split("inputs.").skip(1) {
        let name: String = word
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        assert!(
            inputs.contains_key(&Yaml::String(name.clone())),
            "no input {name}"
        );
    }
    let steps = action["runs"]["steps"].as_vec().unwrap();
    let ids: BTreeSet<&str> = steps.iter().filter_map(|s| s["id"].as_str()).collect();
    for word in text.split("steps.").skip(1) {
        let id: String = word
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        assert!(ids.contains(id.as_str()), "no step {id}");
    }
    // Each script passes its flags to one `gocache ci SUB`.
    let mut scripts = 0;
    for s in steps {
        let Some(script) = s["run"].as_str() else {
            continue;
        };
        let Some((sub, _)) = script.lines().find_map(flags_used) else {
            continue;
        };
        scripts += 1;
        let known = if sub == "begin" {
            &begin_flags
        } else {
            &end_flags
        };
        for w in script.split(|c: char| c.is_whitespace() || c == '(' || c == ')') {
            if w.starts_with("--") {
                assert!(
                    known.contains(w),
                    "action.yml: `gocache ci {sub}` has no {w}"
                );
            }
        }
        if sub == "end" {
            assert!(s["if"].as_str().unwrap().starts_with("always()"));
        }
    }
    assert_eq!(scripts, 2);
}

/// `remote stats --json` and `remote trim --json` against the tests'
/// Garage cluster.
#[test]
fn the_json_of_remote_stats_and_remote_trim_is_documented_field_by_field() {
    use crate::remote::{log_uses, remote_cmd, seed};
    use crate::support::garage::GarageCluster;
    let g = GarageCluster::shared();
    let (url, store) = g.fresh_prefix(&g.rw);
    let entries = seed(&store, 2, 100);
    let now = chrono::Utc::now().timestamp();
    log_uses(&store, &entries, now);
    let url = url.to_string();
    let stats = json(&run_ok(remote_cmd(
        g,
        &g.rw,
        &["remote", "stats", &url, "--json"],
    )));
    assert_eq!(keys(&stats), documented_fields("`remote stats --json`:"));
    for t in [
        "total",
        "actions",
        "outputs",
        "logs",
        "snapshots",
        "manifests",
        "other",
    ] {
        assert_eq!(
            keys(&stats[t]),
            ["bytes", "objects"].map(String::from).into(),
            "{t}"
        );
    }
    assert_eq!(
        keys(&stats["age"][0]),
        ["bucket", "bytes", "objects"].map(String::from).into()
    );
    assert_eq!(
        keys(&stats["counts"]),
        [
            "last",
            "lookups",
            "hits",
            "uploads",
            "upload_bytes",
            "download_bytes",
            "refused",
            "errors"
        ]
        .map(String::from)
        .into()
    );
    // Past the uploads and uses, so that a zero grace period lets every
    // object be a victim (last use is in whole seconds).
    while chrono::Utc::now().timestamp() <= now + 1 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let trim = json(&run_expecting(
        remote_cmd(
            g,
            &g.rw,
            &[
                "remote",
                "trim",
                &url,
                "--budget",
                "0B",
                "--grace",
                "0",
                "--dry-run",
                "--json",
            ],
        ),
        0,
    ));
    assert_eq!(keys(&trim), documented_fields("`remote trim --json`:"));
    assert_eq!(
        keys(&trim["plan"]),
        [
            "before",
            "after",
            "fixed_bytes",
            "protected",
            "victims",
            "unmet"
        ]
        .map(String::from)
        .into()
    );
    assert_eq!(
        keys(&trim["plan"]["victims"][0]),
        ["key", "size", "last_use", "rule"].map(String::from).into()
    );
    assert_eq!(
        keys(&trim["plan"]["unmet"]),
        ["over_by", "protected_bytes", "fixed_bytes"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        keys(&trim["limits"]),
        ["budget", "grace"].map(String::from).into()
    );
}

/// The README's recipes can be copied as written. The
/// `OWNER` placeholder is explained before a recipe uses it; the plain
/// GitHub workflow builds gocache once and restores the binary from a
/// cache of its own (as action.yml does), its keys naming the
/// architecture as action.yml's do; and every trace a `gocache simulate`
/// line replays is made by an earlier line of its block.
#[test]
fn the_recipes_can_be_copied_as_written() {
    use yaml_rust2::YamlLoader;
    let readme = include_str!("../README.md");
    let first_use = readme.find("OWNER/").expect("the recipes use OWNER");
    let explained = readme
        .find("`OWNER` is")
        .expect("the README says what OWNER is");
    assert!(explained < first_use, "OWNER explained after its first use");

    let workflow = readme
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .map(|b| YamlLoader::load_from_str(b).unwrap().remove(0))
        .find(|d| d["jobs"]["test"]["steps"].as_vec().is_some())
        .expect("a workflow in the README");
    let job = &workflow["jobs"]["test"];
    let steps = job["steps"].as_vec().unwrap();
    let build_key = job["env"]["GO_BUILD_KEY"].as_str().unwrap();
    assert!(build_key.contains("${{ runner.arch }}"), "{build_key}");
    let install = steps
        .iter()
        .find(|s| {
            s["run"]
                .as_str()
                .is_some_and(|r| r.contains("cargo install"))
        })
        .expect("a step that builds gocache");
    let run = install["run"].as_str().unwrap();
    let root = run
        .split_whitespace()
        .skip_while(|w| *w != "--root")
        .nth(1)
        .unwrap_or_else(|| panic!("cargo install --root DIR: {run}"));
    let cached = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/cache@"))
                && s["with"]["path"].as_str() == Some(root)
        })
        .unwrap_or_else(|| panic!("no actions/cache step for {root}"));
    let id = cached["id"]
        .as_str()
        .expect("the binary's cache step has an id");
    assert_eq!(
        install["if"].as_str(),
        Some(format!("steps.{id}.outputs.cache-hit != 'true'").as_str()),
        "built only when the binary's cache missed"
    );
    let key = cached["with"]["key"].as_str().unwrap();
    assert!(key.contains("${{ runner.arch }}"), "{key}");
    let action =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/action.yml")).unwrap();
    for want in ["${{ runner.arch }}", "${RUNNER_ARCH}"] {
        assert!(action.contains(want), "action.yml: {want}");
    }

    let mut simulated = 0;
    for block in readme.split("```sh\n").skip(1) {
        let block = block.split("```").next().unwrap();
        let lines: Vec<&str> = block.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !line.trim_start().starts_with("gocache simulate") {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            // What it reads, not what it writes (`--save-trace FILE`).
            let read = words.iter().enumerate().filter(|&(j, w)| {
                w.ends_with(".jsonl") && (j == 0 || words[j - 1] != "--save-trace")
            });
            for (_, trace) in read {
                simulated += 1;
                assert!(
                    lines[..i].iter().any(|l| l.contains(trace)),
                    "`{}` replays {trace}, which nothing before it in its block makes:\n{block}",
                    line.trim()
                );
            }
        }
    }
    assert!(simulated >= 4, "{simulated}");
}
