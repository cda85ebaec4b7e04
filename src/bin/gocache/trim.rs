//! `gocache trim`.

use crate::common::Global;
use std::process::ExitCode;

/// TODO
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(global: &Global, _args: Args) -> anyhow::Result<ExitCode> {
    let _ctx = crate::common::Ctx::locate(global)?;
    anyhow::bail!("not implemented yet")
}
