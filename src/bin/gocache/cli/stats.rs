//! `gocache stats`: what the cache holds.

use std::process::ExitCode;

use chrono::{TimeZone, Utc};

use super::common::{Ctx, Global, Progress, human, print_json};
use gocache::Kind;
use gocache::model::Bytes;
use gocache::scan::{ScanOptions, scan};
use gocache::stats::{ExeStats, Stats, compute};

/// Report what the cache holds.
///
/// Per tier (exe: cached executables; build: everything else) the count,
/// apparent and allocated bytes and share; entries by last use; the largest
/// and most used executables; garbage (action entries whose output is gone,
/// outputs no action names, corrupt action entries); and what else is in
/// the directory. Syncs the index first (incrementally). When the index
/// cannot be used (damaged: it is rebuilt; held by another process for
/// over 2 s, read-only, on a full disk: left alone) it still answers, from
/// a direct walk of the cache, with a warning.
///
/// --json prints one object; see the README for its fields. Fields are
/// only ever added, never renamed or removed.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Do not sync the index with the disk first.
    #[arg(long)]
    no_sync: bool,
}

#[derive(serde::Serialize)]
struct Out<'a> {
    cache_dir: &'a std::path::Path,
    index: &'a std::path::Path,
    /// "read-write"; "rebuilt" when the index was corrupt and was rebuilt;
    /// "in-memory" when the index file could not be used at all.
    index_mode: &'static str,
    /// Why the index file could not be used, if it could not.
    index_problem: Option<&'a str>,
    /// Subdirectories reread to sync the index before reporting.
    synced_subdirs: usize,
    /// The last go commands served by `gocache prog`, newest first.
    prog_sessions: &'a [gocache::model::ProgSession],
    #[serde(flatten)]
    stats: &'a Stats,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let ctx = Ctx::locate(global)?;
    let progress = Progress::new(ctx.quiet || args.json);
    // A recovered index (rebuilt, or an in-memory copy) is synced even
    // with --no-sync: its rows may be few or none.
    let done = ctx.access().run(ctx.now, |index, recovered| {
        let mut synced = 0;
        if !args.no_sync || recovered {
            let opts = ScanOptions::default();
            synced = scan(&ctx.cache_dir, index, &opts, ctx.now, &progress)?
                .rescanned
                .len();
        }
        let stats = compute(&index.entries()?, &index.others()?, ctx.now);
        Ok((synced, stats))
    })?;
    let (synced, stats) = done.value;
    let index = done.index;
    let problem = done.fallback.as_ref().map(|f| f.to_string());
    if let Some(p) = &problem {
        gocache::report::Reporter::warn(&progress, p);
    }
    let sessions = index.sessions(10).unwrap_or_default();
    if args.json {
        print_json(&Out {
            cache_dir: &ctx.cache_dir,
            index: &ctx.index_path,
            index_mode: match &done.fallback {
                _ if index.is_in_memory() => "in-memory",
                Some(gocache::index::Fallback::Rebuilt { .. }) => "rebuilt",
                _ => "read-write",
            },
            index_problem: problem.as_deref(),
            synced_subdirs: synced,
            prog_sessions: &sessions,
            stats: &stats,
        })?;
    } else {
        print_text(&ctx, &stats, &sessions)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(
    ctx: &Ctx,
    s: &Stats,
    sessions: &[gocache::model::ProgSession],
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let row =
        |o: &mut dyn Write, label: &str, b: &Bytes, share: Option<f64>| -> std::io::Result<()> {
            write!(
                o,
                "  {label:<18} {:>9} entries  {:>11} apparent  {:>11} allocated",
                b.entries,
                human(b.apparent_bytes),
                human(b.allocated_bytes)
            )?;
            match share {
                Some(f) => writeln!(o, "  {:>5.1}%", f * 100.0),
                None => writeln!(o),
            }
        };
    writeln!(
        o,
        "Go build cache {} ({})",
        ctx.cache_dir.display(),
        ctx.source
    )?;
    writeln!(o)?;
    writeln!(o, "By tier:")?;
    for t in &s.tiers {
        row(&mut o, t.tier.as_str(), &t.bytes, Some(t.share))?;
    }
    row(&mut o, "total", &s.total, None)?;
    writeln!(o)?;
    writeln!(o, "By kind:")?;
    for k in [Kind::Action, Kind::Output, Kind::Exe] {
        row(&mut o, k.as_str(), s.kinds.get(k), None)?;
    }
    writeln!(o)?;
    writeln!(o, "By last use:")?;
    for a in &s.age {
        row(&mut o, a.bucket, &a.bytes, None)?;
    }
    let exes = |o: &mut dyn Write, title: &str, list: &[ExeStats]| -> std::io::Result<()> {
        if list.is_empty() {
            return Ok(());
        }
        writeln!(o)?;
        writeln!(o, "{title}:")?;
        writeln!(
            o,
            "  {:<24} {:>11} {:>6}  {:<20} entry",
            "program", "size", "hits", "last use"
        )?;
        for e in list {
            let when = Utc
                .timestamp_opt(e.last_use, 0)
                .single()
                .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_else(|| e.last_use.to_string());
            writeln!(
                o,
                "  {:<24} {:>11} {:>6}  {:<20} {}",
                e.program,
                human(e.allocated_bytes),
                e.hits,
                when,
                e.entry
            )?;
        }
        Ok(())
    };
    exes(&mut o, "Largest executables", &s.largest_exes)?;
    exes(&mut o, "Most used executables", &s.most_used_exes)?;
    if !sessions.is_empty() {
        writeln!(o)?;
        writeln!(o, "Recent go commands served by `gocache prog`:")?;
        writeln!(
            o,
            "  {:<20} {:>7} {:>7} {:>8} {:>6} {:>11}",
            "ended", "gets", "hits", "hit rate", "puts", "stored"
        )?;
        for p in sessions {
            let when = Utc
                .timestamp_opt(p.ended, 0)
                .single()
                .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default();
            let rate = if p.gets == 0 {
                0.0
            } else {
                p.hits as f64 * 100.0 / p.gets as f64
            };
            writeln!(
                o,
                "  {when:<20} {:>7} {:>7} {:>7.1}% {:>6} {:>11}",
                p.gets,
                p.hits,
                rate,
                p.puts,
                human(p.put_bytes)
            )?;
        }
    }
    writeln!(o)?;
    writeln!(
        o,
        "Garbage (removed by `gocache trim` once past the grace period):"
    )?;
    row(
        &mut o,
        "dangling actions",
        &s.garbage.dangling_actions,
        None,
    )?;
    row(&mut o, "corrupt actions", &s.garbage.corrupt_actions, None)?;
    row(&mut o, "orphan outputs", &s.garbage.orphan_outputs, None)?;
    writeln!(o)?;
    writeln!(o, "Not cache entries (never touched):")?;
    row(&mut o, "Go's own files", &s.other.go, None)?;
    row(&mut o, "gocache's index", &s.other.gocache, None)?;
    row(&mut o, "odd items", &s.other.odd, None)?;
    for item in &s.other.odd_items {
        writeln!(o, "    {}: {}", item.path, item.what)?;
    }
    Ok(())
}
