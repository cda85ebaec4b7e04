//! `gocache-trim`: `gocache trim` under a name of its own, for cron jobs
//! and systemd units. Same flags, output and exit codes: it runs the same
//! command line code as `gocache trim ARGS…` (`gocache::cli`, compiled
//! once, in the library).

gocache::marker_note!();

fn main() -> std::process::ExitCode {
    gocache::cli::trim_main(std::env::args_os().collect())
}
