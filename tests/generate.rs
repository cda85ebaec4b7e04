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
