//! `gocache ci begin` and `gocache ci end`: the CI mode (see the library's
//! `ci` module for the design).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use super::common::{
    Ctx, Global, Progress, count, human, parse_budget, parse_eviction, parse_exe_quota, print_json,
};
use gocache::ci::{BeginReport, DEFAULT_KEEP_RUNS, EndOptions, EndReport, LOCK_WAIT, Start};
use gocache::enforce::effective_limits;
use gocache::model::Bytes;
use gocache::report::Reporter;

/// Keep a CI cache to what recent runs used, within a budget.
///
/// Run `gocache ci begin` right after the job restores Go's build cache,
/// and `gocache ci end` right before it saves it. Together they record
/// each job as a run in the index (which travels with the cache), see
/// exactly which entries each run used, and remove what none of the last
/// few runs used, then what a budget needs, least recently used by run
/// first. The README has recipes for GitHub Actions and GitLab CI.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    Begin(BeginArgs),
    End(EndArgs),
}

/// Start a run: right after the cache is restored, before any go command.
///
/// Records the run in the index; writes the time into Go's trim.txt, so
/// that Go's own trim does not fire during the job (a restored trim.txt is
/// often over a day old, and an image-baked cache's old mtimes would make
/// it delete everything); and moves back the mtimes of entries used
/// within the last hour (only those), so that every use during the job
/// moves an mtime again and `ci end` sees it. Mtimes are only Go's record
/// of last use: what go builds and which tests it caches do not change.
///
/// When the previous job ended with `ci end`, the index says what is
/// there and begin reads no entry; otherwise it walks the cache once.
/// With no cache restored, it creates the directory and starts a new one.
#[derive(clap::Args, Debug)]
struct BeginArgs {
    /// A name for the run in reports, such as workflow/job@branch
    /// [default: from $GITHUB_WORKFLOW, $GITHUB_JOB and $GITHUB_REF_NAME,
    /// or $CI_JOB_NAME and $CI_COMMIT_REF_NAME].
    #[arg(long, value_name = "TEXT")]
    label: Option<String>,
    /// Print what begin did as JSON.
    #[arg(long)]
    json: bool,
}

/// End the run: after the last go command, right before the cache is saved.
///
/// Syncs the index with the disk, records every entry the run used or
/// made, removes what none of the last --keep-runs runs used, then, while
/// over --budget or --exe-quota, the least recently used by run first,
/// with the same safety as `gocache trim` (nothing used within the grace
/// period, nothing a running go command was handed). Age limits do not
/// apply: runs replace them. Then it prepares the cache for the next
/// `ci begin` and reports restored, used, created, removed and kept
/// entries; with $GITHUB_STEP_SUMMARY set, also as Markdown there.
///
/// Limits not given here come from those stored with `gocache limits`.
/// Exits 0 even when a limit cannot be met (the report says why).
#[derive(clap::Args, Debug)]
struct EndArgs {
    /// Keep what the last N runs used. The default, 10, suits a
    /// repository with many pull requests: it covers runs that use only
    /// part of the cache (docs-only changes, path-filtered tests,
    /// re-runs), up to ten configurations taking turns on one cache, and
    /// pull requests based up to ten runs behind; and what a dependency
    /// bump replaced leaves within ten runs (hours on a busy branch, not
    /// Go's five days). With --budget, N only decides what goes first.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_KEEP_RUNS,
          value_parser = clap::value_parser!(u32).range(1..))]
    keep_runs: u32,
    /// Budget for the whole cache, in bytes on disk as `du` counts them:
    /// 2GiB, 500MB, or 10% of the filesystem.
    #[arg(long, value_name = "SIZE", value_parser = parse_budget, allow_hyphen_values = true)]
    budget: Option<gocache::limits::SizeSpec>,
    /// Quota for cached executables (`go run`, `go tool`), same units.
    #[arg(long, value_name = "SIZE", value_parser = parse_exe_quota, allow_hyphen_values = true)]
    exe_quota: Option<gocache::limits::SizeSpec>,
    /// The order --budget and --exe-quota evict in within a run: lru,
    /// gdsf or gd-cost (see `gocache help limits`; ci end counts no hits,
    /// so under plain go gdsf takes the biggest first: `gocache simulate
    /// --policy trim-gds` replays that) [default: the stored policy, else
    /// lru].
    #[arg(long, value_name = "POLICY", value_parser = parse_eviction)]
    policy: Option<gocache::limits::Eviction>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Begin(a) => begin(global, a),
        Command::End(a) => end(global, a),
    }
}

/// The run's label from the CI's environment, when not given.
fn default_label() -> Option<String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let (Some(w), Some(j)) = (var("GITHUB_WORKFLOW"), var("GITHUB_JOB")) {
        return Some(match var("GITHUB_REF_NAME") {
            Some(r) => format!("{w}/{j}@{r}"),
            None => format!("{w}/{j}"),
        });
    }
    let job = var("CI_JOB_NAME")?;
    Some(match var("CI_COMMIT_REF_NAME") {
        Some(r) => format!("{job}@{r}"),
        None => job,
    })
}

#[derive(serde::Serialize)]
struct BeginOut<'a> {
    cache_dir: &'a Path,
    index: &'a Path,
    /// Why the index file was not used, if it was not.
    fallback: Option<&'a str>,
    /// The cache directory was missing (nothing restored) and was created.
    created_cache_dir: bool,
    seconds: f64,
    #[serde(flatten)]
    report: &'a BeginReport,
}

fn begin(global: &Global, args: BeginArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let (ctx, created) = Ctx::locate_creating(global)?;
    let progress = Progress::new(ctx.quiet, args.json);
    let label = args.label.or_else(default_label);
    let done = ctx.access().run(ctx.now, |index, _| {
        gocache::ci::begin(&ctx.cache_dir, index, label.as_deref(), ctx.now, &progress)
    })?;
    let fallback = done.fallback.as_ref().map(|f| f.to_string());
    if let Some(why) = &fallback {
        progress.warn(why);
        if done.index.is_in_memory() {
            progress.warn(
                "the run cannot be recorded, so ci end will not know what this job used; Go's trim is still held off",
            );
        }
    }
    let report = done.value;
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        print_json(&BeginOut {
            cache_dir: &ctx.cache_dir,
            index: &ctx.index_path,
            fallback: fallback.as_deref(),
            created_cache_dir: created,
            seconds,
            report: &report,
        })?;
    } else if !ctx.quiet {
        print_begin(&report, &ctx.cache_dir, created, seconds)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn run_name(id: i64, label: Option<&str>) -> String {
    match label {
        Some(l) => format!("run {id} ({l})"),
        None => format!("run {id}"),
    }
}

/// "3h", "2d": how long ago `then` was, roughly.
fn ago(now: i64, then: i64) -> String {
    let d = now - then;
    if d < 0 {
        return format!("{} ahead", gocache::limits::format_duration(-d));
    }
    gocache::limits::format_duration(d - d % 60)
}

fn print_begin(r: &BeginReport, cache: &Path, created: bool, seconds: f64) -> std::io::Result<()> {
    let mut o = std::io::stdout().lock();
    let t = &r.restored.total;
    writeln!(
        o,
        "gocache ci begin: {} started; the cache holds {} entries, {} ({seconds:.2}s)",
        run_name(r.run, r.label.as_deref()),
        count(t.entries),
        human(t.allocated_bytes)
    )?;
    let reread = r.scan.rescanned.len();
    match r.start {
        _ if created => writeln!(
            o,
            "  no cache was restored: created {} for a new one",
            cache.display()
        )?,
        Start::Sealed => writeln!(
            o,
            "  the index was sealed by run {}'s ci end: reread {reread} of 256 subdirectories, no entry",
            r.sealed_by.unwrap_or_default()
        )?,
        Start::New => writeln!(o, "  no index yet: scanned the cache once")?,
        Start::Walked => writeln!(
            o,
            "  the index was not left by a ci end: walked the cache once to read every entry's mtime"
        )?,
    }
    if let Some(a) = r.abandoned {
        writeln!(
            o,
            "  run {a} began but never ended (no ci end before the save): it counts for nothing"
        )?;
    }
    writeln!(
        o,
        "  moved back the mtimes of {} entries used within the last hour, so that every use in this job shows",
        count(r.moved_back)
    )?;
    match r.go_trim_was {
        Some(was) if r.started - was >= 86_400 => writeln!(
            o,
            "  Go's own trim held off for the job (trim.txt said {} ago: Go would have trimmed at the first go command)",
            ago(r.started, was)
        )?,
        _ => writeln!(o, "  Go's own trim held off for the job (trim.txt)")?,
    }
    Ok(())
}

fn end(global: &Global, args: EndArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let ctx = match Ctx::locate(global) {
        Ok(ctx) => ctx,
        Err(e)
            if e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<gocache::Error>(),
                    Some(gocache::Error::CacheMissing(_))
                )
            }) =>
        {
            if !global.quiet {
                eprintln!("gocache: {e:#}: no go command made a cache, nothing to end");
            }
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e),
    };
    let progress = Progress::new(ctx.quiet, args.json);
    let flags = gocache::limits::LimitSpecs {
        budget: args.budget,
        exe_quota: args.exe_quota,
        policy: args.policy,
        ..Default::default()
    };
    let tracing = super::common::tracing(gocache::trace::TraceSource::Ci, &progress);
    let done = ctx.access().run(ctx.now, |index, _| {
        index.set_trace(tracing);
        let opts = EndOptions {
            keep_runs: args.keep_runs,
            limits: effective_limits(&ctx.cache_dir, index, &flags)?,
            lock_wait: LOCK_WAIT,
        };
        gocache::ci::end(&ctx.cache_dir, index, &opts, ctx.now, &progress)
    })?;
    let fallback = done.fallback.as_ref().map(|f| f.to_string());
    if let Some(why) = &fallback {
        progress.warn(why);
    }
    let report = done.value;
    if report.run.is_none() {
        progress.warn(
            "no ci begin was recorded for this job (run `gocache ci begin` right after restoring the cache): \
             nothing could be counted as used, and the next ci begin walks the cache",
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(file) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|f| !f.is_empty()) {
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .and_then(|mut f| f.write_all(markdown(&report).as_bytes()));
        if let Err(e) = written {
            progress.warn(&format!(
                "cannot write the summary to {}: {e}",
                Path::new(&file).display()
            ));
        }
    }
    if args.json {
        print_json(&super::common::Located {
            cache_dir: &ctx.cache_dir,
            index: &ctx.index_path,
            fallback: fallback.as_deref(),
            seconds,
            report: &report,
        })?;
    } else if !ctx.quiet {
        print!("{}", text(&report, seconds));
    }
    Ok(ExitCode::SUCCESS)
}

/// A bar of `width` cells for `value` out of `max`: full blocks, then
/// light shade.
fn bar(value: u64, max: u64, width: usize) -> String {
    let filled = if max == 0 {
        0
    } else {
        ((value as f64 / max as f64) * width as f64).round() as usize
    }
    .min(width);
    let filled = if value > 0 { filled.max(1) } else { filled };
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

/// The rows of the report and the chart: name, figures, note.
fn rows(r: &EndReport) -> Vec<(&'static str, Bytes, String)> {
    let by_rule: Vec<String> = r
        .removed_by_rule
        .iter()
        .map(|(rule, b)| format!("{}: {}", rule.as_str(), count(b.entries)))
        .collect();
    vec![
        ("restored", r.restored, String::new()),
        (
            "used",
            r.used,
            format!("{:.0}% of the restored bytes", r.used_share * 100.0),
        ),
        ("created", r.created, String::new()),
        ("removed", r.removed, by_rule.join(", ")),
        (
            "saved",
            r.kept,
            format!("whole directory {}, as du counts it", human(r.cache_bytes)),
        ),
    ]
}

fn limits_line(r: &EndReport) -> String {
    let runs = match (&r.run, r.keep_from) {
        (_, Some(from)) => format!(
            "kept what the last {} runs used (runs {from} and later)",
            r.keep_runs
        ),
        (Some(run), None) => format!(
            "fewer than {} runs so far (this is run {}): nothing is stale yet",
            r.keep_runs, run.id
        ),
        (None, None) => format!(
            "fewer than {} runs recorded: nothing is stale yet",
            r.keep_runs
        ),
    };
    let mut limits = Vec::new();
    if let Some(b) = r.limits.budget {
        limits.push(format!("budget {}", human(b)));
    }
    if let Some(q) = r.limits.exe_quota {
        limits.push(format!("exe quota {}", human(q)));
    }
    let status = if r.executed.is_none() {
        "not enforced (another trim held the lock)".to_string()
    } else if r.limits_met {
        "met".to_string()
    } else {
        let unmet: Vec<String> = r
            .unmet
            .iter()
            .map(|u| {
                format!(
                    "{} {} over: {}",
                    u.limit.as_str(),
                    human(u.over_by),
                    u.reason
                )
            })
            .collect();
        format!("not met ({})", unmet.join("; "))
    };
    if limits.is_empty() {
        format!("{runs}; no budget")
    } else {
        format!("{runs}; {} {status}", limits.join(", "))
    }
}

fn title(r: &EndReport) -> String {
    match &r.run {
        Some(run) => format!(
            "{}, {}",
            run_name(run.id, run.label.as_deref()),
            gocache::limits::format_duration(run.seconds.max(0))
        ),
        None => "no run recorded (ci begin was not run)".to_string(),
    }
}

fn text(r: &EndReport, seconds: f64) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "gocache ci end: {} ({seconds:.2}s)", title(r));
    let _ = writeln!(o, "  {:<9} {:>9}  {:>11}", "", "entries", "on disk");
    let rows = rows(r);
    for (name, b, note) in &rows {
        let _ = writeln!(
            o,
            "  {name:<9} {:>9}  {:>11}  {note}",
            count(b.entries),
            human(b.allocated_bytes)
        );
    }
    let max = rows
        .iter()
        .map(|(_, b, _)| b.allocated_bytes)
        .max()
        .unwrap_or(0);
    for (name, b, _) in rows.iter().filter(|(n, _, _)| *n != "removed") {
        let _ = writeln!(
            o,
            "  {name:<9} {} {}",
            bar(b.allocated_bytes, max, 30),
            human(b.allocated_bytes)
        );
    }
    if !r.largest_programs.is_empty() {
        let progs: Vec<String> = r
            .largest_programs
            .iter()
            .map(|p| {
                format!(
                    "{} {}{}",
                    p.program,
                    human(p.allocated_bytes),
                    if p.used { " (used)" } else { "" }
                )
            })
            .collect();
        let _ = writeln!(o, "  largest programs: {}", progs.join(", "));
    }
    let _ = writeln!(o, "  {}", limits_line(r));
    o
}

/// The report as Markdown, for `$GITHUB_STEP_SUMMARY`: a table whose last
/// column is a bar chart (Unicode blocks render the same in a GitHub job
/// summary, GitLab, a terminal and plain text).
fn markdown(r: &EndReport) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "### Go build cache: {}\n", title(r));
    let _ = writeln!(o, "| | entries | on disk | |");
    let _ = writeln!(o, "| --- | ---: | ---: | --- |");
    let rows = rows(r);
    let max = rows
        .iter()
        .map(|(_, b, _)| b.allocated_bytes)
        .max()
        .unwrap_or(0);
    for (name, b, note) in &rows {
        let _ = writeln!(
            o,
            "| {name} | {} | {} | {} {note} |",
            count(b.entries),
            human(b.allocated_bytes),
            bar(b.allocated_bytes, max, 20)
        );
    }
    let line = limits_line(r);
    let mut chars = line.chars();
    let line: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    let _ = writeln!(
        o,
        "\nThis job used {:.0}% of the restored bytes. {line}.\n",
        r.used_share * 100.0,
    );
    if !r.largest_programs.is_empty() {
        let _ = writeln!(
            o,
            "| largest programs | on disk | used by this run | runs counted |"
        );
        let _ = writeln!(o, "| --- | ---: | --- | ---: |");
        for p in &r.largest_programs {
            let _ = writeln!(
                o,
                "| `{}` | {} | {} | {} |",
                p.program,
                human(p.allocated_bytes),
                if p.used { "yes" } else { "no" },
                count(p.hits)
            );
        }
        o.push('\n');
    }
    for w in &r.warnings {
        let _ = writeln!(o, "> gocache: {w}\n");
    }
    o
}
