//! The `gocache` command line: a thin layer over the library. Flags are
//! parsed and validated here, errors get a hint and an exit code. Both
//! binaries run it, compiled once, here in the library: `gocache` through
//! [`main`], `gocache-trim` through [`trim_main`] (`gocache trim` under a
//! name of its own). Which one a program is also follows its name, as
//! `go` does (a link named `go` is the wrapper, one named `gocache-trim`
//! is `gocache trim`).
//!
//! Exit codes (stable, for scripts):
//! - 0: success (also: a trim skipped because another one holds the lock;
//!   a `ci end` whose limits cannot be met, which its report explains);
//! - 1: the command failed (I/O, index, a go command that could not start,
//!   a remote store that is down or refuses);
//! - 2: bad usage or input (unknown flag, bad size, GOCACHE=off, relative or
//!   missing cache directory, a directory that is not a Go build cache, an
//!   --index whose directory does not exist, a malformed remote URL,
//!   endpoint or region, half an AWS key pair);
//! - 3: `trim` ran, but a limit is not met after it (removals failed,
//!   entries used within the grace period, the fixed bytes alone over the
//!   budget): the output says which limit, by how much and why; likewise
//!   `remote trim` for its budget. A dry run exits 0;
//! - `gocache go` exits with go's own status; 127 when no real go is found
//!   (nothing on PATH but gocache, or go commands nested too deep).
//!
//! Standard output is written with `writeln!` and its error returned, never
//! with `println!`, which panics when the reader is gone (`gocache limits |
//! head -1`); `common::report_error` turns that error into a quiet exit 0,
//! as ripgrep does. The lint below keeps it so.

#![deny(clippy::print_stdout)]

mod ci;
mod common;
mod dir;
mod generate;
mod go;
mod hook;
mod limits;
mod prog;
mod remote;
mod scan;
mod simulate;
mod stats;
mod trace;
mod trim;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Keep Go's build cache within a byte budget.
///
/// gocache indexes every entry of the Go build cache ($GOCACHE) in SQLite,
/// reports what it holds, and evicts least recently used entries to keep it
/// under a budget, with a separate quota for cached executables (`go run`,
/// `go tool`) and per-tier age limits.
///
/// The cache is found as `go env GOCACHE` finds it: --cache-dir, else
/// $GOCACHE, else GOCACHE in the go env file, else ~/.cache/go-build.
/// The index lives inside it, in <cache>/gocache/index.sqlite, unless
/// --index says otherwise.
#[derive(Parser, Debug)]
#[command(name = "gocache", version, max_term_width = 80)]
struct Cli {
    #[command(flatten)]
    global: common::Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Scan(scan::Args),
    Stats(stats::Args),
    Trim(trim::Args),
    Limits(limits::Args),
    Dir(dir::Args),
    Hook(hook::Args),
    Go(go::Args),
    Prog(prog::Args),
    Ci(ci::Args),
    Simulate(simulate::Args),
    Remote(remote::Args),
    Trace(trace::Args),
    Completions(generate::CompletionsArgs),
    Man(generate::ManArgs),
}

/// The subcommands that touch no local cache: their help, man pages and
/// completions leave out --cache-dir and --index (still accepted).
const NO_CACHE: [&str; 4] = ["simulate", "remote", "completions", "man"];

/// The command line as clap builds it from the definitions, arranged for
/// people: in every command's help the options are grouped, what to keep
/// (limits) first, then where (the cache, a remote tier), then how to
/// report; the global --cache-dir and --index are hidden where no cache is
/// touched. Parsing, help, completions and man pages all use this one.
pub fn command() -> clap::Command {
    let cmd = Cli::command();
    let globals: Vec<clap::Arg> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .cloned()
        .collect();
    arrange(cmd, &globals, false)
}

/// Arranges `cmd` and its subcommands before clap builds them (building
/// fixes where each argument is). The global flags are copied into each
/// subcommand here, as clap would copy them (it leaves those present
/// alone), so that they can be hidden and placed.
fn arrange(mut cmd: clap::Command, globals: &[clap::Arg], no_cache: bool) -> clap::Command {
    use common::heading;
    for g in globals {
        if cmd.get_arguments().all(|a| a.get_id() != g.get_id()) {
            let id = g.get_id().as_str();
            let hide = no_cache && (id == "cache_dir" || id == "index");
            cmd = cmd.arg(g.clone().hide(hide));
        }
    }
    // `mut_arg` moves an argument last: moving each group in turn puts
    // the groups in this order after the others (help lists headings in
    // the order their first argument comes).
    for group in [heading::CACHE, heading::REMOTE, heading::OUTPUT] {
        let ids: Vec<String> = cmd
            .get_arguments()
            .filter(|a| a.get_help_heading() == Some(group))
            .map(|a| a.get_id().to_string())
            .collect();
        for id in ids {
            cmd = cmd.mut_arg(id, |a| a);
        }
    }
    cmd.mut_subcommands(|sub| {
        let no_cache = no_cache || NO_CACHE.contains(&sub.get_name());
        arrange(sub, globals, no_cache)
    })
}

/// Runs the command line `args` (the program's name first).
pub fn main(args: Vec<OsString>) -> ExitCode {
    // A link named `gocache-trim` is gocache-trim.
    if program_name(&args).is_some_and(|n| n == "gocache-trim") {
        return trim_main(args);
    }
    // `gocache` installed under the name `go` acts as the wrapper.
    if let Some(code) = go::run_if_invoked_as_go(&args) {
        return code;
    }
    // What `go run -exec` starts: not a command for people.
    if args
        .get(1)
        .is_some_and(|a| a == gocache::wrapper::SHIM_SUBCOMMAND)
    {
        return go::shim(&args[2..]);
    }
    // `gocache go ARGS`: ARGS are go's, whatever they look like.
    let (args, go_args) = go::split_argv(args);
    let cli = match command()
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Scan(a) => scan::run(&cli.global, a),
        Command::Stats(a) => stats::run(&cli.global, a),
        Command::Trim(a) => trim::run(&cli.global, a),
        Command::Limits(a) => limits::run(&cli.global, a),
        Command::Dir(a) => dir::run(&cli.global, a),
        Command::Hook(a) => hook::run(&cli.global, a),
        Command::Go(a) => go::run(&cli.global, a, go_args),
        Command::Prog(a) => prog::run(&cli.global, a),
        Command::Ci(a) => ci::run(&cli.global, a),
        Command::Simulate(a) => simulate::run(&cli.global, a),
        Command::Remote(a) => remote::run(&cli.global, a),
        Command::Trace(a) => trace::run(&cli.global, a),
        Command::Completions(a) => generate::completions(command(), trim_command(), a),
        Command::Man(a) => generate::man(command(), a),
    };
    exit(result)
}

/// A command's outcome as the process's exit code.
fn exit(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => common::report_error(&err),
    }
}

/// `gocache-trim ARGS…`: `gocache trim ARGS…` under a name of its own
/// (`args`: the program's name first). Its own command, so that the usage
/// line, `--version` and completions name `gocache-trim`.
pub fn trim_main(args: Vec<OsString>) -> ExitCode {
    use clap::FromArgMatches;
    let matches = trim_command().get_matches_from(args);
    let parsed = common::Global::from_arg_matches(&matches)
        .and_then(|g| Ok((g, trim::Args::from_arg_matches(&matches)?)));
    let (global, args) = parsed.unwrap_or_else(|e| e.exit());
    exit(trim::run(&global, args))
}

/// The `gocache-trim` command: `gocache trim`'s flags and help, with
/// gocache's own flags (`--cache-dir`, `--index`, `-q`) and `--version`.
fn trim_command() -> clap::Command {
    let trim = Cli::command()
        .find_subcommand("trim")
        .expect("gocache has a trim subcommand")
        .clone();
    // The global flags come with their struct's about: trim's stays.
    let about = trim.get_about().cloned().unwrap_or_default();
    let long_about = trim.get_long_about().cloned().unwrap_or_default();
    <common::Global as clap::Args>::augment_args(trim)
        .about(about)
        .long_about(long_about)
        .name("gocache-trim")
        .bin_name("gocache-trim")
        .version(env!("CARGO_PKG_VERSION")) // what #[command(version)] shows
        .max_term_width(80)
}

/// The file name the program was started as (`args[0]`'s last component).
fn program_name(args: &[OsString]) -> Option<&std::ffi::OsStr> {
    std::path::Path::new(args.first()?).file_name()
}
