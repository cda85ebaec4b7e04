//! `gocache scan`: reconcile the index with the disk.

use std::process::ExitCode;
use std::time::Instant;

use super::common::{Ctx, Global, Progress, count, human, print_json};
use gocache::scan::{ScanOptions, scan};

/// Reconcile the index with the cache on disk.
///
/// Adds new entries, updates changed ones and drops vanished ones. By
/// default only the subdirectories whose mtime changed since the last scan
/// are reread; --full rereads all 256 (and so also picks up the last-use
/// times Go writes into entry mtimes, which do not change a directory's
/// mtime).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Reread every subdirectory, not only those that changed.
    #[arg(long)]
    full: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let ctx = Ctx::locate(global)?;
    let progress = Progress::new(ctx.quiet, args.json);
    let (mut index, problem) = ctx.open_index_or_fallback()?;
    if index.path() == std::path::Path::new(":memory:") {
        anyhow::bail!(
            "{}; scan has nothing to write to: pass --index FILE to keep the index elsewhere",
            problem.unwrap_or_default()
        );
    }
    if let Some(p) = &problem {
        gocache::report::Reporter::warn(&progress, p);
    }
    let started = Instant::now();
    let opts = ScanOptions {
        full: args.full,
        ..Default::default()
    };
    let summary = scan(&ctx.cache_dir, &mut index, &opts, ctx.now, &progress)?;
    let elapsed = started.elapsed();
    let totals = index.fast_totals()?;
    let (entries, alloc) = (totals.total.entries, totals.total.allocated_bytes);
    if args.json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            cache_dir: &'a std::path::Path,
            index: &'a std::path::Path,
            entries: u64,
            seconds: f64,
            #[serde(flatten)]
            summary: &'a gocache::scan::ScanSummary,
        }
        print_json(&Out {
            cache_dir: &ctx.cache_dir,
            index: &ctx.index_path,
            entries,
            seconds: elapsed.as_secs_f64(),
            summary: &summary,
        })?;
    } else if !ctx.quiet {
        println!(
            "scanned {} of 256 subdirectories in {:.2}s: {} added, {} updated, {} removed",
            summary.rescanned.len(),
            elapsed.as_secs_f64(),
            count(summary.added),
            count(summary.updated),
            count(summary.removed),
        );
        println!(
            "index: {} entries, {} allocated{}",
            count(entries),
            human(alloc),
            if summary.odd > 0 {
                format!("; {} odd items (`gocache stats`)", count(summary.odd))
            } else {
                String::new()
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
