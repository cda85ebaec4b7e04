//! `gocache`: keep Go's build cache within a byte budget. The command line
//! lives in `cli/`, shared with `gocache-trim`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main(std::env::args_os().collect())
}
