//! `gocache completions SHELL` and `gocache man`: shell completions and
//! man pages generated from the clap definitions, so they always match the
//! installed binary.
//!
//! Generated at run time, not in a build script: the clap definitions live
//! in this crate (which its build script cannot use), and `cargo install` installs only the binary, so
//! files a build script wrote would stay in `target/` anyway. The binary
//! prints them where the README says to put them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Print a shell completion script.
///
/// Install for bash (the script completes gocache-trim too; bash loads it
/// by the command's name, hence the link):
///
///     gocache completions bash > ~/.local/share/bash-completion/completions/gocache
///     ln -s gocache ~/.local/share/bash-completion/completions/gocache-trim
///
/// zsh (a directory on $fpath, before compinit):
///
///     gocache completions zsh > ~/.zfunc/_gocache
///
/// fish:
///
///     gocache completions fish > ~/.config/fish/completions/gocache.fish
#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Print the man page (roff), or write one per command to a directory.
///
/// `gocache man | man -l -` shows it; install all pages with
///
///     gocache man --dir ~/.local/share/man/man1
#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Write gocache.1 and gocache-SUBCOMMAND.1 into this directory
    ///
    /// Created if missing; without --dir, gocache.1 is printed.
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    dir: Option<PathBuf>,
}

/// Prints the completion script of `cmd`, gocache; for bash, followed by
/// `trim`'s, gocache-trim (a bash completion file may register several
/// commands; one for zsh or fish names one).
pub fn completions(
    mut cmd: clap::Command,
    mut trim: clap::Command,
    args: CompletionsArgs,
) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "gocache", &mut out);
    if args.shell == clap_complete::Shell::Bash {
        clap_complete::generate(args.shell, &mut trim, "gocache-trim", &mut out);
    }
    write_stdout(&out)
}

pub fn man(cmd: clap::Command, args: ManArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(|e| gocache::Error::io("creating", &dir, e))?;
            write_pages(&cmd, &[], &dir)
                .map_err(|e| gocache::Error::io("writing man pages into", &dir, e))?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let mut out = Vec::new();
            page(&cmd, &[], &mut out)?;
            write_stdout(&out)
        }
    }
}

/// Writes the page of `cmd` (reached by the subcommand names `path`) and
/// of each subcommand into `dir`, as `gocache-ci-end.1`.
fn write_pages(cmd: &clap::Command, path: &[&str], dir: &Path) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let mut sub_path = path.to_vec();
        sub_path.push(sub.get_name());
        write_pages(sub, &sub_path, dir)?;
    }
    let file = dir.join(clap_mangen::Man::new(cmd.clone()).get_filename());
    let mut out = Vec::new();
    page(cmd, path, &mut out)?;
    std::fs::write(file, out)
}

/// One man page: clap_mangen's sections, with a synopsis that names each
/// flag's value (`[--budget SIZE]`) and, before the version, EXIT STATUS,
/// ENVIRONMENT and FILES (the ones the command uses).
fn page(cmd: &clap::Command, path: &[&str], w: &mut Vec<u8>) -> std::io::Result<()> {
    use clap_mangen::roff::Roff;
    let man = clap_mangen::Man::new(cmd.clone());
    let preamble = Roff::new().render();
    // Each section is rendered on its own, each with the preamble: keep one.
    let section = |f: &dyn Fn(&mut Vec<u8>) -> std::io::Result<()>| -> std::io::Result<Vec<u8>> {
        let mut b = Vec::new();
        f(&mut b)?;
        Ok(b.strip_prefix(preamble.as_bytes())
            .map(<[u8]>::to_vec)
            .unwrap_or(b))
    };
    w.extend_from_slice(preamble.as_bytes());
    w.extend(section(&|b| man.render_title(b))?);
    w.extend(section(&|b| man.render_name_section(b))?);
    w.extend(section(&|b| synopsis(cmd).to_writer(b))?);
    w.extend(section(&|b| man.render_description_section(b))?);
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        w.extend(section(&|b| man.render_options_section(b))?);
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        w.extend(section(&|b| man.render_subcommands_section(b))?);
    }
    w.extend(section(&|b| {
        extra_sections(path.first().copied()).to_writer(b)
    })?);
    if cmd.get_version().is_some() {
        w.extend(section(&|b| man.render_version_section(b))?);
    }
    Ok(())
}

/// `gocache trim [-n|--dry-run] [--budget SIZE] …`: each visible flag
/// with its value's name, then the arguments and subcommands.
fn synopsis(cmd: &clap::Command) -> clap_mangen::roff::Roff {
    use clap_mangen::roff::{Inline, Roff, bold, italic, roman};
    let name = cmd.get_bin_name().unwrap_or_else(|| cmd.get_name());
    let mut line: Vec<Inline> = vec![bold(name)];
    let value = |a: &clap::Arg| -> Option<String> {
        if !a.get_action().takes_values() {
            return None;
        }
        Some(match a.get_value_names() {
            Some(names) => names
                .iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            None => a.get_id().as_str().to_uppercase(),
        })
    };
    for a in cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_positional())
    {
        let (open, close) = if a.is_required_set() {
            ("", "")
        } else {
            ("[", "]")
        };
        line.push(roman(format!(" {open}")));
        match (a.get_short(), a.get_long()) {
            (Some(s), Some(l)) => {
                line.push(bold(format!("-{s}")));
                line.push(roman("|"));
                line.push(bold(format!("--{l}")));
            }
            (Some(s), None) => line.push(bold(format!("-{s}"))),
            (None, Some(l)) => line.push(bold(format!("--{l}"))),
            (None, None) => continue,
        }
        if let Some(v) = value(a) {
            line.push(roman(" "));
            line.push(italic(v));
        }
        line.push(roman(close));
        if matches!(a.get_action(), clap::ArgAction::Append) {
            line.push(roman("..."));
        }
    }
    for a in cmd.get_positionals().filter(|a| !a.is_hide_set()) {
        let (open, close) = if a.is_required_set() {
            ("<", ">")
        } else {
            ("[", "]")
        };
        line.push(roman(format!(" {open}")));
        line.push(italic(value(a).unwrap_or_else(|| a.get_id().to_string())));
        line.push(roman(close));
        if matches!(a.get_action(), clap::ArgAction::Append) {
            line.push(roman("..."));
        }
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        line.push(roman(" <"));
        line.push(italic("COMMAND"));
        line.push(roman(">"));
    }
    let mut roff = Roff::new();
    roff.control("SH", ["SYNOPSIS"]);
    roff.text(line);
    roff
}

/// Commands that work on the local cache.
const CACHE: &[&str] = &[
    "scan", "stats", "trim", "limits", "dir", "hook", "go", "prog", "ci", "trace",
];
/// Commands that read the limits.
const LIMITS: &[&str] = &["stats", "trim", "limits", "hook", "go", "prog", "ci"];
/// Commands that may talk to a remote tier.
const REMOTE: &[&str] = &["stats", "trim", "prog", "remote"];

/// EXIT STATUS, then the environment variables and files the command
/// `top` (the first subcommand name; `None` for gocache itself: all of
/// them) reads or writes.
fn extra_sections(top: Option<&str>) -> clap_mangen::roff::Roff {
    use clap_mangen::roff::{Roff, bold, italic, roman};
    let applies = |to: &[&str]| top.is_none_or(|t| to.contains(&t));
    let mut roff = Roff::new();
    let item = |roff: &mut Roff, tag: clap_mangen::roff::Inline, text: &str| {
        roff.control("TP", []);
        roff.text([tag]);
        roff.text([roman(text)]);
    };
    roff.control("SH", ["EXIT STATUS"]);
    for (code, text) in EXIT_STATUS {
        item(&mut roff, roman(*code), text);
    }
    let limit_vars: Vec<(String, String)> = gocache::limits::Limit::ALL
        .iter()
        .map(|l| {
            (
                l.env_var().to_string(),
                format!(
                    "As {}, under that flag and over the config file and the stored limits; \
                     empty is unset.",
                    l.flag()
                ),
            )
        })
        .collect();
    let mut vars: Vec<(String, String)> = Vec::new();
    for (name, text, to) in ENVIRONMENT {
        if *name == "GOCACHE_CONFIG" && applies(LIMITS) {
            vars.extend(limit_vars.iter().cloned());
        }
        if applies(to) {
            vars.push((name.to_string(), text.to_string()));
        }
    }
    if !vars.is_empty() {
        roff.control("SH", ["ENVIRONMENT"]);
        for (name, text) in &vars {
            item(&mut roff, bold(name.as_str()), text);
        }
    }
    let files: Vec<_> = FILES.iter().filter(|(_, _, to)| applies(to)).collect();
    if !files.is_empty() {
        roff.control("SH", ["FILES"]);
        for (name, text, _) in files {
            item(&mut roff, italic(*name), text);
        }
    }
    roff
}

/// The exit codes (as `cli/mod.rs` documents them).
const EXIT_STATUS: &[(&str, &str)] = &[
    (
        "0",
        "Success; also a trim skipped because another one holds the lock, and a ci end whose \
         limits cannot be met (its report says why).",
    ),
    (
        "1",
        "The command failed: I/O, the index, a go command that could not start, a remote \
         store that is down or refuses.",
    ),
    (
        "2",
        "Bad usage or input, and nothing was changed: an unknown flag, a bad value in a flag, \
         the environment or the config file, GOCACHE=off, a cache directory that is relative, \
         missing or not a Go build cache, a malformed remote URL.",
    ),
    (
        "3",
        "trim (or remote trim) ran, but a limit is still not met: the output says which, by \
         how much and why (with -q, in one line on standard error). A dry run exits 0.",
    ),
    (
        "127",
        "gocache go found no real go (nothing on PATH but gocache, or go commands nested too \
         deep); otherwise gocache go exits with go's own status.",
    ),
];

/// Environment variables: name, meaning, the commands that read them.
const ENVIRONMENT: &[(&str, &str, &[&str])] = &[
    (
        "GOCACHE",
        "The Go build cache directory, as for go (an absolute path; off disables the cache); \
         --cache-dir wins over it.",
        CACHE,
    ),
    (
        "GOENV",
        "The go env file, where GOCACHE is looked up when the environment does not set it.",
        CACHE,
    ),
    (
        "GOCACHE_INDEX",
        "The index database [default: <cache>/gocache/index.sqlite]; --index wins over it.",
        CACHE,
    ),
    (
        "GOCACHE_CONFIG",
        "The config file of limits; off reads none [default: \
         $XDG_CONFIG_HOME/gocache/config, else ~/.config/gocache/config].",
        &["stats", "trim", "limits", "hook", "go", "prog", "ci", "dir"],
    ),
    (
        "XDG_CONFIG_HOME",
        "Where the default config file is looked for.",
        &["stats", "trim", "limits", "hook", "go", "prog", "ci", "dir"],
    ),
    (
        "GOCACHE_TRACE",
        "How many trace events the index keeps: a number, on (1000000) or off (none).",
        &["hook", "go", "prog", "ci", "trace"],
    ),
    (
        "GOCACHE_GO",
        "The real go the wrapper runs, an absolute path [default: the first go on PATH that \
         is not gocache].",
        &["go"],
    ),
    (
        "AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL",
        "The S3 endpoint of a remote tier [default: AWS's for the region]; --endpoint wins.",
        REMOTE,
    ),
    (
        "AWS_REGION, AWS_DEFAULT_REGION",
        "The region requests to a remote tier are signed for [default: us-east-1]; --region \
         wins.",
        REMOTE,
    ),
    (
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN",
        "The credentials for a remote tier; none: anonymous requests.",
        REMOTE,
    ),
    (
        "GITHUB_STEP_SUMMARY",
        "ci end appends its report there, as Markdown.",
        &["ci"],
    ),
    (
        "GITHUB_WORKFLOW, GITHUB_JOB, GITHUB_REF_NAME, CI_JOB_NAME, CI_COMMIT_REF_NAME",
        "The run's label, when ci begin is given no --label.",
        &["ci"],
    ),
];

/// Files: where, what, the commands that use them.
const FILES: &[(&str, &str, &[&str])] = &[
    (
        "~/.cache/go-build",
        "The Go build cache when neither --cache-dir, GOCACHE nor the go env file names one.",
        CACHE,
    ),
    (
        "<cache>/gocache/index.sqlite",
        "The index (with its -wal and -shm): every entry, the stored limits, CI runs and \
         trace events. A damaged one is moved aside and rebuilt.",
        CACHE,
    ),
    (
        "<cache>/gocache/trim.lock",
        "Held while entries are removed, so that one trim runs at a time.",
        &["trim", "hook", "go", "prog", "ci"],
    ),
    (
        "$XDG_CONFIG_HOME/gocache/config",
        "The config file (else ~/.config/gocache/config): key = value lines, such as \
         budget = 10GiB.",
        &["stats", "trim", "limits", "hook", "go", "prog", "ci", "dir"],
    ),
    (
        "<cache>/trim.txt",
        "Go's record of its own last trim: ci begin sets it to now, so that Go does not trim \
         during the job.",
        &["ci"],
    ),
];

fn write_stdout(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}
