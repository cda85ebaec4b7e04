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

use clap::{CommandFactory, Parser, Subcommand};

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
    let cli = Cli::parse_from(args);
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
        Command::Completions(a) => generate::completions(Cli::command(), trim_command(), a),
        Command::Man(a) => generate::man(Cli::command(), a),
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
