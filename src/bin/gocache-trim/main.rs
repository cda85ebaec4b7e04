//! `gocache-trim`: `gocache trim` under a name of its own, for cron jobs
//! and systemd units. Same flags, output and exit codes: it runs the same
//! command line code as `gocache trim ARGS…`.

#[path = "../gocache/cli/mod.rs"]
mod cli;

fn main() -> std::process::ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // `gocache-trim ARGS…` is `gocache trim ARGS…`.
    args.splice(..args.len().min(1), ["gocache".into(), "trim".into()]);
    cli::main(args)
}
