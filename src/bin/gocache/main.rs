//! `gocache`: keep Go's build cache within a byte budget. The command line
//! lives in the library (`gocache::cli`), shared with `gocache-trim`.

gocache::marker_note!();

fn main() -> std::process::ExitCode {
    gocache::cli::main(std::env::args_os().collect())
}
