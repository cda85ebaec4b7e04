//! What people expect of any command line tool, checked for every
//! command (issue 25): a closed pipe ends a command quietly, as it ends
//! `ls | head`.

use crate::support::*;

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Issue 25, item 2: `gocache limits | true` and the like. The reader of
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
