//! `gocache scan`.

use crate::common::Global;
use std::process::ExitCode;

/// TODO
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_global: &Global, _args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
