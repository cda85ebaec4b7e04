//! `gocache completions SHELL` and `gocache man`: generated from the clap
//! definitions, they know every subcommand.

use std::process::Command;

use crate::support::*;

/// The subcommands people use (not the internal exec shim).
const SUBCOMMANDS: &[&str] = &[
    "scan",
    "stats",
    "trim",
    "limits",
    "dir",
    "hook",
    "go",
    "prog",
    "ci",
    "simulate",
    "remote",
    "trace",
    "completions",
    "man",
];

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn completions_for_bash_zsh_and_fish_know_every_subcommand() {
    let sb = Sandbox::new();
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout_of(&run_ok(sb.gocache(["completions", shell])));
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell}: no {sub}");
        }
        assert!(script.contains("budget"), "{shell}: no --budget");
        assert!(!script.contains("exec-shim"), "{shell}: the internal shim");
    }
    // bash: the script loads, and completes as a user would see it.
    let script = sb.root().join("gocache.bash");
    std::fs::write(
        &script,
        stdout_of(&run_ok(sb.gocache(["completions", "bash"]))),
    )
    .unwrap();
    let complete = |words: &str, cword: usize| {
        let cmd = format!(
            "source '{}'\nCOMP_WORDS=({words})\nCOMP_CWORD={cword}\n\
             _gocache gocache \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
             echo \"${{COMPREPLY[*]}}\"",
            script.display()
        );
        stdout_of(&run_ok(Command::new("bash").args(["-c", &cmd])))
    };
    assert_eq!(complete("gocache tri", 1).trim(), "trim");
    assert_eq!(complete("gocache tr", 1).trim(), "trim trace");
    assert!(complete("gocache trim --bu", 2).contains("--budget"));
    assert!(complete("gocache completions ''", 2).contains("zsh"));
    // Not a shell it knows: exit 2, naming the ones it does.
    let out = sb.gocache(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fish"));
}

#[test]
fn the_man_page_covers_every_subcommand_and_installs_one_page_each() {
    let sb = Sandbox::new();
    let page = stdout_of(&run_ok(sb.gocache(["man"])));
    assert!(page.contains(".TH gocache 1"), "{page}");
    assert!(page.contains(".SH NAME"), "{page}");
    for sub in SUBCOMMANDS {
        assert!(page.contains(sub), "no {sub} in the man page");
    }
    assert!(!page.contains("exec-shim"));
    let dir = sb.root().join("share/man/man1");
    run_ok(sb.gocache(["man", "--dir"]).arg(&dir));
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    pages.sort();
    let mut want: Vec<String> = SUBCOMMANDS
        .iter()
        .map(|s| format!("gocache-{s}.1"))
        .chain(["gocache.1".to_string()])
        .chain(["begin", "end"].map(|s| format!("gocache-ci-{s}.1")))
        .chain(["gocache-trace-export.1".to_string()])
        .chain(["stats", "trim"].map(|s| format!("gocache-remote-{s}.1")))
        .collect();
    want.sort();
    assert_eq!(pages, want);
    let trim = std::fs::read_to_string(dir.join("gocache-trim.1")).unwrap();
    assert!(trim.contains("budget"), "{trim}");
    let remote = std::fs::read_to_string(dir.join("gocache-remote-trim.1")).unwrap();
    assert!(remote.contains("fleet"), "{remote}");
}

/// A closed set of values completes to its values, in
/// every shell (`--policy <TAB>` offers lru, gdsf, gd-cost, not file
/// names), and zsh and fish describe each option in one short line, not
/// its whole help paragraph.
#[test]
fn completions_offer_closed_values_and_one_line_descriptions() {
    let sb = Sandbox::new();
    let script = sb.root().join("gocache.bash");
    std::fs::write(
        &script,
        stdout_of(&run_ok(sb.gocache(["completions", "bash"]))),
    )
    .unwrap();
    let complete = |words: &str, cword: usize| {
        let cmd = format!(
            "source '{}'\ncd '{}'\nCOMP_WORDS=({words})\nCOMP_CWORD={cword}\n\
             _gocache gocache \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
             echo \"${{COMPREPLY[*]}}\"",
            script.display(),
            sb.root().display()
        );
        stdout_of(&run_ok(Command::new("bash").args(["-c", &cmd])))
    };
    for cmd in ["trim", "limits", "hook", "prog"] {
        assert_eq!(
            complete(&format!("gocache {cmd} --policy ''"), 3).trim(),
            "lru gdsf gd-cost",
            "{cmd}"
        );
    }
    assert_eq!(
        complete("gocache ci end --policy ''", 4).trim(),
        "lru gdsf gd-cost"
    );
    let sim = complete("gocache simulate --policy ''", 3);
    for p in [
        "lru",
        "gdsf",
        "gd-cost",
        "lru-actions",
        "go-age",
        "belady",
        "bound",
    ] {
        assert!(sim.split_whitespace().any(|w| w == p), "{p}: {sim}");
    }
    assert!(!sim.contains("gocache.bash"), "file names: {sim}");
    let what = complete("gocache dir ''", 2);
    assert!(what.contains("cache index"), "{what}");

    let fish = stdout_of(&run_ok(sb.gocache(["completions", "fish"])));
    let zsh = stdout_of(&run_ok(sb.gocache(["completions", "zsh"])));
    // fish: `-d 'DESCRIPTION'`, one short line each.
    for line in fish.lines() {
        if let Some((_, d)) = line.split_once(" -d '") {
            // Up to the closing quote (fish writes `\'` inside).
            let end = d
                .char_indices()
                .find(|&(i, c)| c == '\'' && !d[..i].ends_with('\\'))
                .map_or(d.len(), |(i, _)| i);
            let d = &d[..end];
            assert!(d.chars().count() <= 100, "fish: {} chars: {d}", d.len());
        }
    }
    let line = fish
        .lines()
        .find(|l| l.contains("using_subcommand trim") && l.contains("-l policy"))
        .unwrap_or_else(|| panic!("{fish}"));
    // Its values run on over the next lines, up to the next `complete`.
    let at = fish.find(line).unwrap();
    let policy = fish[at..].split("\ncomplete ").next().unwrap_or_default();
    assert!(
        policy.contains("lru") && policy.contains("gd-cost") && policy.contains("-a "),
        "{policy}"
    );
    // zsh: `'--flag=[DESCRIPTION]:VALUE:ACTION'`.
    for line in zsh.lines().filter(|l| l.starts_with("'--")) {
        let d = line
            .split_once("=[")
            .or_else(|| line.split_once("'["))
            .map_or("", |(_, d)| d);
        let d = d.split("]:").next().unwrap_or(d);
        assert!(d.chars().count() <= 110, "zsh: {} chars: {line}", d.len());
    }
    // `:POLICY:((lru\:"least recently used first" gdsf\:"…" …))`, a
    // value a line.
    let at = zsh.find("'--policy=").unwrap_or_else(|| panic!("{zsh}"));
    let policy = zsh[at..].split("))'").next().unwrap_or_default();
    for want in [":POLICY:((lru\\:", "\ngdsf\\:", "\ngd-cost\\:"] {
        assert!(policy.contains(want), "{want} in {policy}");
    }
}

/// `roff` as a reader sees it: fonts and escapes dropped.
fn plain(roff: &str) -> String {
    roff.replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "")
        .replace("\\-", "-")
        .replace("\\*(Aq", "'")
}

/// The man pages say what the exit codes, the
/// environment variables and the files are, and the synopsis names each
/// flag's value.
#[test]
fn man_pages_have_exit_status_environment_files_and_value_names() {
    let sb = Sandbox::new();
    let page = stdout_of(&run_ok(sb.gocache(["man"])));
    for section in [".SH \"EXIT STATUS\"", ".SH ENVIRONMENT", ".SH FILES"] {
        assert!(page.contains(section), "{section} in\n{page}");
    }
    let text = plain(&page);
    for want in [
        "GOCACHE_BUDGET",
        "GOCACHE_CONFIG",
        "GOCACHE_INDEX",
        "GOCACHE_TRACE",
        "gocache/index.sqlite",
        "gocache/config",
        "[--cache-dir DIR]",
        "[--index FILE]",
    ] {
        assert!(text.contains(want), "{want} in\n{text}");
    }
    let exit = text
        .split("EXIT STATUS")
        .nth(1)
        .unwrap_or_else(|| panic!("{text}"));
    for code in ["0", "1", "2", "3", "127"] {
        assert!(
            exit.lines()
                .any(|l| l.trim() == code || l.starts_with(&format!("{code} "))),
            "exit status {code} in\n{exit}"
        );
    }
    let dir = sb.root().join("man1");
    run_ok(sb.gocache(["man", "--dir"]).arg(&dir));
    let trim = plain(&std::fs::read_to_string(dir.join("gocache-trim.1")).unwrap());
    let synopsis = trim
        .split(".SH SYNOPSIS")
        .nth(1)
        .and_then(|s| s.split(".SH").next())
        .unwrap_or_else(|| panic!("{trim}"));
    for want in [
        "[--budget SIZE]",
        "[--policy POLICY]",
        "[--grace DURATION]",
        "[-n|--dry-run]",
    ] {
        assert!(synopsis.contains(want), "{want} in\n{synopsis}");
    }
    for section in [".SH \"EXIT STATUS\"", ".SH ENVIRONMENT", ".SH FILES"] {
        assert!(
            std::fs::read_to_string(dir.join("gocache-trim.1"))
                .unwrap()
                .contains(section),
            "{section} in gocache-trim.1"
        );
    }
}
