//! `gocache trace`: the trace of cache events the index records.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::common::{Ctx, Global, print_json};

/// The events the index records for `gocache simulate`.
///
/// The hook (after `gocache go`), `gocache ci end` and `gocache prog`
/// record what go did with the cache in the index: entries first seen
/// (for an action, a miss and its put), uses, and prog's gets, misses and
/// puts with their rebuild time. The index keeps the newest 1,000,000
/// events; GOCACHE_TRACE=off records none, GOCACHE_TRACE=N keeps N.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    Export(ExportArgs),
}

/// Write the recorded events as a trace for `gocache simulate`.
///
/// JSON Lines in the schema `gocache simulate` reads (the README
/// documents it): a header line, then one event a line, oldest first; a
/// new header wherever the recorder changes (hook, ci, prog). IDs are
/// the first 16 hex digits of Go's. To judge a budget for another machine,
/// export there (`gocache trace export --since 7d -o ci.jsonl`) and
/// simulate the file here (`gocache simulate ci.jsonl --budget 20%`).
#[derive(clap::Args, Debug)]
struct ExportArgs {
    /// Only events from the last DURATION [default: all the index keeps]
    ///
    /// 90m, 36h, 7d, 2w.
    #[arg(long, value_name = "DURATION", value_parser = parse_since,
          value_hint = clap::ValueHint::Other)]
    since: Option<i64>,
    /// Write to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE", help_heading = super::common::heading::OUTPUT,
          value_hint = clap::ValueHint::FilePath)]
    output: Option<PathBuf>,
    /// With --output: print what was written as JSON
    ///
    /// The events, first and last times, and the file.
    #[arg(long, requires = "output", help_heading = super::common::heading::OUTPUT)]
    json: bool,
}

fn parse_since(s: &str) -> gocache::Result<i64> {
    gocache::limits::parse_duration(s)
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Export(a) => export(global, a),
    }
}

fn export(global: &Global, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let ctx = Ctx::locate(global)?;
    // Nothing to export without the file itself: wait for it as long as
    // `scan` does, and take no in-memory copy.
    let access = gocache::index::Access {
        in_memory_ok: false,
        wait: gocache::index::BUSY_TIMEOUT,
        ..ctx.access()
    };
    let since_ms = args
        .since
        .map_or(i64::MIN, |d| ctx.now.saturating_sub(d).saturating_mul(1000));
    let done = access.run(ctx.now, |index, _| index.trace().events(since_ms))?;
    if let Some(why) = &done.fallback
        && !ctx.quiet
    {
        eprintln!("gocache: warning: {why}");
    }
    let events = done.value;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty());
    let created = events.first().map(|e| e.event.t_ms.div_euclid(1000));
    let write = |out: &mut dyn Write| -> std::io::Result<u64> {
        let mut out = std::io::BufWriter::new(out);
        let n = gocache::trace::export(&mut out, &events, host.as_deref(), created)?;
        out.flush()?;
        Ok(n)
    };
    let Some(path) = &args.output else {
        write(&mut std::io::stdout().lock())
            .map_err(|e| anyhow::Error::new(e).context("writing the trace to standard output"))?;
        return Ok(ExitCode::SUCCESS);
    };
    let n = std::fs::File::create(path)
        .and_then(|mut f| write(&mut f).and_then(|n| f.sync_all().map(|()| n)))
        .map_err(|e| anyhow::anyhow!("cannot write the trace to {}: {e}", path.display()))?;
    let (first, last) = (
        events.first().map(|e| e.event.t_ms),
        events.last().map(|e| e.event.t_ms),
    );
    if args.json {
        print_json(&serde_json::json!({
            "output": path,
            "events": n,
            "first_ms": first,
            "last_ms": last,
        }))?;
    } else if !ctx.quiet {
        eprintln!(
            "gocache: wrote {n} events to {} (replay them with `gocache simulate {}`)",
            path.display(),
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
