//! `gocache hook`: the post-insert hook.

use crate::common::Global;
use std::process::ExitCode;

/// Sync what changed and enforce the limits (run after each go command).
#[derive(clap::Args, Debug, Default)]
pub struct Args {}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    run_after_go(global, &args)?;
    Ok(ExitCode::SUCCESS)
}

/// The hook as the wrapper calls it after go exits. Never fails the go
/// command: the wrapper reports an error as a warning.
pub fn run_after_go(_global: &Global, _args: &Args) -> anyhow::Result<()> {
    Ok(())
}
