//! `gocache hook`: the post-insert hook, run after each go command.

use std::process::ExitCode;

use super::common::{Ctx, Global, LimitArgs, Progress, print_json};
use gocache::enforce::{AfterUse, after_use, effective_limits};
use gocache::index::{Access, Use};
use gocache::report::Reporter;
use gocache::scan::{HeadStart, ScanOptions, scan_with_head_start};
use gocache::wrapper::AfterGo;

/// Sync what changed and enforce the exe quota and budget (after a go command).
///
/// Rereads only the cache subdirectories whose mtime changed (a small build
/// touches a few), then, only if the exe quota, the budget or the free-space
/// floor is exceeded, evicts least recently used entries down to 90% of
/// them, with the same policy and executor as `trim`. What the go command
/// just used is inside the grace period and stays. When a trim is running,
/// the hook records what it saw, leaves eviction to the trim and exits 0.
/// When the index cannot be used (damaged: rebuilt; held by another
/// process for over 2 s, on a full disk: left alone) the hook works from a
/// walk of the cache, so eviction never waits on writing the index.
///
/// `gocache go …` runs it for you after each go command.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct Args {
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Print what the hook did as JSON.
    #[arg(long, help_heading = super::common::heading::OUTPUT)]
    pub json: bool,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    // Refused before anything is opened; the wrapper's hook only warns.
    args.limits.given()?;
    super::common::tracing_checked(gocache::trace::TraceSource::Hook)?;
    run_after_go(global, &args, &AfterGo::default())?;
    Ok(ExitCode::SUCCESS)
}

#[derive(serde::Serialize)]
struct Out<'a> {
    /// "under_limits", "trimmed", or "trim_running".
    action: &'static str,
    /// Subdirectories reread.
    rescanned: &'a [u8],
    /// Entries removed.
    removed: u64,
    /// Allocated bytes removed.
    removed_allocated: u64,
}

/// The hook as the wrapper calls it after go exits. Errors are the
/// caller's to report as warnings: a hook never fails a go command.
pub fn run_after_go(global: &Global, args: &Args, seen: &AfterGo) -> anyhow::Result<()> {
    let ctx = Ctx::locate(global)?;
    let given = args.limits.given()?;
    let access = Access {
        keep_wal: true,
        ..ctx.access()
    };
    // Read the cache while SQLite opens the index.
    let (opened, mut head) = HeadStart::open_while_reading(&ctx.cache_dir, &access);
    let progress = Progress::new(ctx.quiet, true);
    // What go used, so that the limits protect what just ran; a use of an
    // entry not indexed yet waits for the scan to add it.
    let used = |name| Use {
        name,
        at: ctx.now,
        hit: true,
        marked: false,
    };
    let tracing = super::common::tracing(gocache::trace::TraceSource::Hook, &progress);
    // Run again from the start on a rebuilt or in-memory index when this
    // one fails (the head start is only good for the first try).
    let done = access.run_from(opened, ctx.now, |index, _| {
        index.credit_module(seen.module.clone(), seen.started_ns);
        index.set_trace(tracing);
        let synced = scan_with_head_start(
            &ctx.cache_dir,
            index,
            &ScanOptions::default(),
            ctx.now,
            &progress,
            head.take(),
        )?;
        let mut uses: Vec<Use> = seen.exe_uses.iter().copied().map(used).collect();
        if let Some(tool) = &seen.tool
            && let Some(name) = gocache::wrapper::latest_exe_named(&ctx.cache_dir, index, tool)?
        {
            uses.push(used(name));
        }
        let limits = effective_limits(&ctx.cache_dir, index, &given)?;
        let outcome = after_use(&ctx.cache_dir, index, &uses, &limits, ctx.now, &progress)?;
        Ok((synced, outcome))
    })?;
    if let Some(why) = &done.fallback {
        progress.warn(&why.to_string());
    }
    let (synced, outcome) = done.value;
    if let AfterUse::Trimmed(e) = &outcome
        && e.failed > 0
    {
        progress.warn(&format!(
            "could not remove {} cache entries (first: {})",
            super::common::count(e.failed),
            e.errors.first().map_or("", String::as_str)
        ));
    }
    let rescanned = synced.rescanned;
    let (action, removed, removed_allocated) = match outcome {
        AfterUse::UnderLimits => ("under_limits", 0, 0),
        AfterUse::Trimmed(e) => ("trimmed", e.removed, e.removed_allocated),
        // A trim is evicting: what this go command added is recorded (the
        // sync above); eviction is left to it.
        AfterUse::TrimRunning => ("trim_running", 0, 0),
    };
    if args.json {
        print_json(&Out {
            action,
            rescanned: &rescanned,
            removed,
            removed_allocated,
        })?;
    } else if removed > 0 && !ctx.quiet {
        eprintln!(
            "gocache: evicted {} cache entries ({}) to stay within the limits",
            super::common::count(removed),
            super::common::human(removed_allocated)
        );
    }
    Ok(())
}
