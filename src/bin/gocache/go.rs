//! `gocache go`.

use crate::common::Global;
use std::process::ExitCode;

/// TODO
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_global: &Global, _args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}

/// When the binary was invoked as `go` (a symlink), runs as the wrapper and
/// returns its exit code; otherwise `None`.
pub fn run_if_invoked_as_go() -> Option<ExitCode> {
    None
}
