//! What every subcommand shares: global flags, finding the cache and the
//! index, the clock, progress bars, and turning errors into exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

/// Flags every subcommand takes.
#[derive(clap::Args, Debug, Clone)]
pub struct Global {
    /// The Go build cache directory [default: as `go env GOCACHE`].
    #[arg(long, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The index database [default: <cache>/gocache/index.sqlite].
    #[arg(long, global = true, value_name = "FILE", env = "GOCACHE_INDEX")]
    pub index: Option<PathBuf>,
    /// Print only errors.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

/// Maps an error to a message on stderr and an exit code.
pub fn report_error(err: &anyhow::Error) -> ExitCode {
    if is_broken_pipe(err) {
        return ExitCode::SUCCESS;
    }
    let code = exit_code(err);
    eprintln!("gocache: error: {err:#}");
    ExitCode::from(code)
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// 2 for bad input (the user can fix the command line or environment), 1
/// for everything else.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    use gocache::Error;
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<Error>() {
            return match e {
                Error::Locate(_)
                | Error::CacheMissing(_)
                | Error::CacheNotADirectory(_)
                | Error::Invalid(_) => 2,
                _ => 1,
            };
        }
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.code;
        }
    }
    1
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for Failure {}

/// The current time, read once per command.
#[allow(dead_code)] // used by the commands as they land
pub fn now() -> gocache::UnixTime {
    chrono::Utc::now().timestamp()
}
