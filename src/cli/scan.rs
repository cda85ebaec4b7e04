//! `gocache scan`: reconcile the index with the disk.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use super::common::{Ctx, Global, Progress, count, heading, human, print_json};
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
    #[arg(long, help_heading = heading::OUTPUT)]
    json: bool,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let ctx = Ctx::locate(global)?;
    let progress = Progress::new(ctx.quiet, args.json);
    // scan's job is to write the index: a damaged one is rebuilt, but an
    // in-memory copy would be pointless, so the file is waited for as long
    // as ever and its error is the command's.
    let access = gocache::index::Access {
        in_memory_ok: false,
        wait: gocache::index::BUSY_TIMEOUT,
        ..ctx.access()
    };
    let started = Instant::now();
    let opts = ScanOptions {
        full: args.full,
        ..Default::default()
    };
    let done = access
        .run(ctx.now, |index, _| {
            scan(&ctx.cache_dir, index, &opts, ctx.now, &progress)
        })
        .map_err(|e| {
            let hint = if e.is_index_busy() {
                "another process holds the index; try again when it is done"
            } else {
                "scan has nothing to write to: pass --index FILE to keep the index elsewhere"
            };
            anyhow::Error::new(e).context(hint)
        })?;
    if let Some(p) = &done.fallback {
        gocache::report::Reporter::warn(&progress, &p.to_string());
    }
    let (summary, index) = (done.value, done.index);
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
        let mut o = std::io::stdout().lock();
        writeln!(
            o,
            "scanned {} of 256 subdirectories in {:.2}s: {} added, {} updated, {} removed",
            summary.rescanned.len(),
            elapsed.as_secs_f64(),
            count(summary.added),
            count(summary.updated),
            count(summary.removed),
        )?;
        writeln!(
            o,
            "index: {} entries, {} allocated{}",
            count(entries),
            human(alloc),
            if summary.odd > 0 {
                format!("; {} odd items (`gocache stats`)", count(summary.odd))
            } else {
                String::new()
            }
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
