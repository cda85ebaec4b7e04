//! `gocache limits`: show or store the limits that trim and the hook use.

use std::process::ExitCode;

use super::common::{Ctx, Global, print_json};
use gocache::enforce::effective_limits;

/// Show or store the limits `trim` and `hook` enforce.
///
/// With no flags, shows the stored limits and what they resolve to on this
/// cache's filesystem. With flags, stores them (merged over what is
/// stored), so cron, the hook and people share one set. Flags given to
/// `trim` or `hook` override the stored values for that run only.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    limits: super::common::LimitArgs,
    /// Forget every stored limit (the defaults apply again).
    #[arg(long)]
    reset: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let ctx = Ctx::locate(global)?;
    // The limits live in the index file: a damaged one is rebuilt (the
    // limits it still yields are kept), but no in-memory copy will do.
    let access = gocache::index::Access {
        in_memory_ok: false,
        wait: gocache::index::BUSY_TIMEOUT,
        ..ctx.access()
    };
    let flags = args.limits.specs();
    let done = access
        .run(ctx.now, |index, _| {
            if args.reset {
                index.store_limits(&Default::default())?;
            }
            if !flags.is_empty() {
                let merged = index.stored_limits()?.merge(&flags);
                index.store_limits(&merged)?;
            }
            let stored = index.stored_limits()?;
            let effective = effective_limits(&ctx.cache_dir, index, &Default::default())?;
            Ok((stored, effective))
        })
        .map_err(|e| {
            anyhow::Error::new(e).context(
                "limits are stored in the index, which cannot be opened; pass --index FILE",
            )
        })?;
    if let Some(why) = &done.fallback {
        eprintln!("gocache: warning: {why}");
    }
    let (stored, effective) = done.value;
    if args.json {
        print_json(&serde_json::json!({ "stored": stored, "effective": effective }))?;
    } else if !ctx.quiet {
        println!(
            "Limits for {} (stored in {}):",
            ctx.cache_dir.display(),
            ctx.index_path.display()
        );
        println!("{effective}");
        if stored.is_empty() {
            println!(
                "(none stored: these are the defaults; set some with e.g. `gocache limits --budget 10GiB --exe-quota 2GiB`)"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
