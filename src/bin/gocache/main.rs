//! The `gocache` command: a thin layer over the library. Flags are parsed
//! and validated here, errors get a hint and an exit code.
//!
//! Exit codes (stable, for scripts):
//! - 0: success (also: a trim skipped because another one holds the lock);
//! - 1: the command failed (I/O, index, a go command that could not start);
//! - 2: bad usage or input (unknown flag, bad size, GOCACHE=off, relative or
//!   missing cache directory);
//! - `gocache go` exits with go's own status.

mod common;
mod go;
mod hook;
mod limits;
mod prog;
mod scan;
mod simulate;
mod stats;
mod trim;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

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
#[command(name = "gocache", version, max_term_width = 100)]
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
    Hook(hook::Args),
    Go(go::Args),
    Prog(prog::Args),
    Simulate(simulate::Args),
    /// (internal) Started by `go run -exec`: records the executable, then runs it.
    #[command(name = "__exec-shim", hide = true)]
    ExecShim(go::ShimArgs),
}

fn main() -> ExitCode {
    // `gocache` installed under the name `go` acts as the wrapper.
    if let Some(code) = go::run_if_invoked_as_go() {
        return code;
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Scan(a) => scan::run(&cli.global, a),
        Command::Stats(a) => stats::run(&cli.global, a),
        Command::Trim(a) => trim::run(&cli.global, a),
        Command::Limits(a) => limits::run(&cli.global, a),
        Command::Hook(a) => hook::run(&cli.global, a),
        Command::Go(a) => go::run(&cli.global, a),
        Command::Prog(a) => prog::run(&cli.global, a),
        Command::Simulate(a) => simulate::run(&cli.global, a),
        Command::ExecShim(a) => go::shim(a),
    };
    match result {
        Ok(code) => code,
        Err(err) => common::report_error(&err),
    }
}
