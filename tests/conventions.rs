//! What people expect of any command line tool, checked for every
//! command: a closed pipe ends a command quietly, as it ends
//! `ls | head`.

use crate::support::*;

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `gocache limits | true` and the like. The reader of
/// the pipe is gone before the command writes, so its first write fails
/// with EPIPE: each command exits 0, says nothing and does not panic.
#[test]
fn every_command_exits_quietly_when_its_reader_is_gone() {
    let sb = Sandbox::with_template();
    let trace = sb.root().join("t.jsonl");
    run_ok(
        sb.gocache(["simulate", "--synthetic", "--days", "1", "--save-trace"])
            .arg(&trace),
    );
    let trace = trace.display().to_string();
    let commands: &[&[&str]] = &[
        &["limits"],
        &["limits", "--json"],
        &["dir"],
        &["dir", "index"],
        &["dir", "--json"],
        &["scan"],
        &["scan", "--json"],
        &["stats"],
        &["stats", "--json"],
        &["trim", "-n"],
        &["trim", "-n", "--json"],
        &["hook", "--json"],
        &["ci", "begin"],
        &["ci", "end"],
        &["ci", "begin", "--json"],
        &["ci", "end", "--json"],
        &["trace", "export"],
        &["simulate", "--budget", "50%", &trace],
        &["simulate", "--json", "--budget", "50%", &trace],
        &["completions", "bash"],
        &["man"],
        &["--help"],
        &["--version"],
        &["trim", "--help"],
        &["limits", "--budget", "10GiB"],
        &["stats", "--zero"],
    ];
    for args in commands {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = sb
            .gocache(*args)
            .stdout(writer)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "gocache {} | true: {}",
            args.join(" "),
            stderr_of(&out)
        );
        assert_eq!(
            stderr_of(&out),
            "",
            "gocache {} | true says something",
            args.join(" ")
        );
    }
}

/// Every command's help page, by the words that reach it.
const COMMANDS: &[&[&str]] = &[
    &[],
    &["scan"],
    &["stats"],
    &["trim"],
    &["limits"],
    &["dir"],
    &["hook"],
    &["prog"],
    &["ci", "begin"],
    &["ci", "end"],
    &["simulate"],
    &["remote", "stats"],
    &["remote", "trim"],
    &["trace", "export"],
    &["completions"],
    &["man"],
];

fn help(sb: &Sandbox, words: &[&str]) -> String {
    let out = run_ok(sb.gocache(words.iter().chain(&["--help"])));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The option lines of a help page: `(heading, "--flag <VALUE>")`.
fn options(page: &str) -> Vec<(String, String)> {
    let mut heading = String::new();
    let mut out = Vec::new();
    for line in page.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            heading = line.trim_end_matches(':').to_string();
        } else if line.trim_start().starts_with('-')
            && (2..=6).contains(&(line.len() - line.trim_start().len()))
        {
            out.push((heading.clone(), line.trim().to_string()));
        }
    }
    out
}

/// The help of option `flag` on `page`, on one line.
fn option_text(page: &str, flag: &str) -> String {
    let is_option = |l: &str| {
        l.trim_start().starts_with('-') && (2..=6).contains(&(l.len() - l.trim_start().len()))
    };
    let mut lines = page.lines().skip_while(|l| {
        !(is_option(l)
            && l.trim()
                .split(", ")
                .any(|f| f.split_whitespace().next() == Some(flag)))
    });
    let mut text = lines
        .next()
        .unwrap_or_else(|| panic!("{flag} in\n{page}"))
        .to_string();
    for l in lines.take_while(|l| !is_option(l) && (l.is_empty() || l.starts_with(' '))) {
        text.push(' ');
        text.push_str(l);
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The help pages agree with each other and with the
/// code. Each flag has one value name wherever it appears; a flag that
/// reads an environment variable says which; flags come in groups (what
/// to keep, where, how to report); commands that touch no cache do not
/// offer --cache-dir and --index; trim and ci end name every source of
/// limits, in the order the code layers them.
#[test]
fn help_pages_agree_with_each_other_and_with_the_code() {
    let sb = Sandbox::new();
    let mut value_names: std::collections::BTreeMap<String, (String, String)> = Default::default();
    for words in COMMANDS {
        let page = help(&sb, words);
        let what = format!("gocache {} --help", words.join(" "));
        for (_, opt) in options(&page) {
            let opt = opt.split("  ").next().unwrap();
            let Some(long) = opt.split(", ").last() else {
                continue;
            };
            let mut parts = long.split_whitespace();
            let (Some(flag), value) = (parts.next(), parts.next()) else {
                continue;
            };
            let value = value.unwrap_or("").to_string();
            match value_names.get(flag) {
                Some((v, other)) => {
                    assert_eq!(v, &value, "{flag}: {v} in {other}, {value} in {what}")
                }
                None => {
                    value_names.insert(flag.to_string(), (value, what.clone()));
                }
            }
        }
        let no_cache = matches!(
            words.first(),
            Some(&"simulate" | &"completions" | &"man" | &"remote")
        );
        for flag in ["--cache-dir", "--index"] {
            assert_eq!(!page.contains(flag), no_cache, "{flag} in {what}:\n{page}");
        }
    }
    assert_eq!(value_names["--policy"].0, "<POLICY>");

    for words in [&["trim"][..], &["limits"], &["hook"], &["ci", "end"]] {
        let page = help(&sb, words);
        let what = format!("gocache {} --help", words.join(" "));
        // Each flag that reads a variable says so.
        for (flag, var) in [
            ("--budget", "GOCACHE_BUDGET"),
            ("--exe-quota", "GOCACHE_EXE_QUOTA"),
            ("--policy", "GOCACHE_POLICY"),
            ("--cache-dir", "GOCACHE"),
            ("--index", "GOCACHE_INDEX"),
        ] {
            let text = option_text(&page, flag);
            assert!(
                text.contains(&format!("[env: {var}]")),
                "{flag} of {what}: {text}"
            );
        }
        // Grouped: what to keep, where, how to report.
        let opts = options(&page);
        let heading_of = |flag: &str| {
            opts.iter()
                .find(|(_, o)| o.contains(&format!("{flag} ")) || o.ends_with(flag))
                .map(|(h, _)| h.as_str())
                .unwrap_or_else(|| panic!("{flag} in {what}"))
        };
        for flag in ["--budget", "--exe-quota", "--policy"] {
            assert_eq!(heading_of(flag), "Limits", "{flag} in {what}");
        }
        for flag in ["--cache-dir", "--index"] {
            assert_eq!(heading_of(flag), "Cache", "{flag} in {what}");
        }
        for flag in ["--json", "--quiet"] {
            assert_eq!(heading_of(flag), "Output", "{flag} in {what}");
        }
    }
    for words in [&["trim"][..], &["ci", "end"]] {
        let page = help(&sb, words);
        let flat = page.split_whitespace().collect::<Vec<_>>().join(" ");
        let at = |s: &str| {
            flat.find(s)
                .unwrap_or_else(|| panic!("{s:?} in gocache {words:?} --help:\n{page}"))
        };
        let order = [
            at("the environment (GOCACHE_BUDGET"),
            at("then the config file"),
            at("then those stored with `gocache limits`"),
            at("then the defaults"),
        ];
        assert!(order.is_sorted(), "{words:?}: {order:?}\n{page}");
    }
}

/// The defaults are where a newcomer looks first. With
/// nothing set, a trim removes executables unused for 2 days where Go
/// keeps them 5: the help of stats, limits and trim says so.
#[test]
fn the_help_of_stats_limits_and_trim_says_what_the_defaults_do() {
    let sb = Sandbox::new();
    for words in [&["stats"][..], &["limits"], &["trim"]] {
        let page = help(&sb, words);
        let flat = page.split_whitespace().collect::<Vec<_>>().join(" ");
        for want in [
            "With no limits set",
            "build entries unused for 5 days (as Go does)",
            "executables unused for 2 days (Go keeps them 5)",
            "no budget",
        ] {
            assert!(
                flat.contains(want),
                "{want:?} in gocache {words:?} --help:\n{page}"
            );
        }
    }
}
