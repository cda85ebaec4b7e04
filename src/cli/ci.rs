//! `gocache ci begin` and `gocache ci end`: the CI mode (see the library's
//! `ci` module for the design).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use super::common::{
    COLUMNS, Ctx, Global, Progress, count, eviction_parser, fit_tail, heading, human, parse_budget,
    parse_exe_quota, print_json, wrap,
};
use gocache::ci::{BeginReport, DEFAULT_KEEP_RUNS, EndOptions, EndReport, LOCK_WAIT, Start};
use gocache::enforce::effective_limits;
use gocache::index::Fallback;
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
    ///
    /// [default: from $GITHUB_WORKFLOW, $GITHUB_JOB and $GITHUB_REF_NAME,
    /// or $CI_JOB_NAME and $CI_COMMIT_REF_NAME].
    #[arg(long, value_name = "TEXT")]
    label: Option<String>,
    /// Print what begin did as JSON.
    #[arg(long, help_heading = heading::OUTPUT)]
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
/// Limits not given here (the budget, the exe quota, the grace period, the
/// free-space floor and the policy) come from the environment
/// (GOCACHE_BUDGET, GOCACHE_EXE_QUOTA, …), then the config file
/// ($GOCACHE_CONFIG, else $XDG_CONFIG_HOME/gocache/config), then those
/// stored with `gocache limits`, then the defaults (no budget). Exits 0
/// even when a limit cannot be met (the report says why).
#[derive(clap::Args, Debug)]
struct EndArgs {
    /// Keep what the last N runs used
    ///
    /// The default, 10, suits a repository with many pull requests: it
    /// covers runs that use only
    /// part of the cache (docs-only changes, path-filtered tests,
    /// re-runs), up to ten configurations taking turns on one cache, and
    /// pull requests based up to ten runs behind; and what a dependency
    /// bump replaced leaves within ten runs (hours on a busy branch, not
    /// Go's five days). With --budget, N only decides what goes first.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_KEEP_RUNS,
          value_parser = clap::value_parser!(u32).range(1..), allow_hyphen_values = true,
          help_heading = heading::LIMITS)]
    keep_runs: u32,
    /// The most the cache may take, as `du` counts it: 2GiB, 500MB, 10%, none [env:
    /// GOCACHE_BUDGET]
    ///
    /// In bytes on disk: 2GiB, 500MB, or 10% of the filesystem; none for no
    /// budget.
    #[arg(long, value_name = "SIZE", value_parser = parse_budget, allow_hyphen_values = true,
          help_heading = heading::LIMITS, value_hint = clap::ValueHint::Other)]
    budget: Option<gocache::limits::SizeLimit>,
    /// The most cached executables (`go run`, `go tool`) may take [env:
    /// GOCACHE_EXE_QUOTA]
    ///
    /// A size as for --budget, or none.
    #[arg(long, value_name = "SIZE", value_parser = parse_exe_quota, allow_hyphen_values = true,
          help_heading = heading::LIMITS, value_hint = clap::ValueHint::Other)]
    exe_quota: Option<gocache::limits::SizeLimit>,
    /// The order --budget and --exe-quota evict in within a run [default: lru]
    /// [env: GOCACHE_POLICY]
    ///
    /// See `gocache help limits`. ci end counts no hits, so under plain go
    /// gdsf takes the biggest first: `gocache simulate --policy gds`
    /// replays that.
    #[arg(long, value_name = "POLICY", value_parser = eviction_parser(),
          help_heading = heading::LIMITS)]
    policy: Option<gocache::limits::Eviction>,
    /// Print the report as JSON.
    #[arg(long, help_heading = heading::OUTPUT)]
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
        // One fault, one warning: what it costs, in the same line.
        if done.index.is_in_memory() {
            progress.warn(&format!(
                "{why}; the run cannot be recorded, so ci end will not know what this job used \
                 (Go's trim is still held off)"
            ));
        } else {
            progress.warn(why);
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
    let mut say = |indent: &str, text: String| say_within(&mut o, indent, &text);
    say(
        "",
        format!(
            "gocache ci begin: {} started; the cache holds {} entries, {} ({seconds:.2}s)",
            run_name(r.run, r.label.as_deref()),
            count(t.entries),
            human(t.allocated_bytes)
        ),
    )?;
    let reread = r.scan.rescanned.len();
    say(
        "  ",
        match r.start {
            _ if created => format!(
                "no cache was restored: created {} for a new one",
                cache.display()
            ),
            Start::Sealed => format!(
                "the index was sealed by run {}'s ci end: reread {reread} of 256 subdirectories, \
                 no entry",
                r.sealed_by.unwrap_or_default()
            ),
            Start::New => "no index yet: scanned the cache once".to_string(),
            Start::Walked => "the index was not left by a ci end: walked the cache once to read \
                              every entry's mtime"
                .to_string(),
        },
    )?;
    if let Some(a) = r.abandoned {
        say(
            "  ",
            format!(
                "run {a} began but never ended (no ci end before the save): it counts for nothing"
            ),
        )?;
    }
    say(
        "  ",
        format!(
            "moved back the mtimes of {} entries used within the last hour, so that every use \
             in this job shows",
            count(r.moved_back)
        ),
    )?;
    say(
        "  ",
        match r.go_trim_was {
            Some(was) if r.started - was >= 86_400 => format!(
                "Go's own trim held off for the job (trim.txt said {} ago: Go would have \
                 trimmed at the first go command)",
                ago(r.started, was)
            ),
            _ => "Go's own trim held off for the job (trim.txt)".to_string(),
        },
    )
}

/// Writes `text` in lines of at most [`COLUMNS`]: the first after
/// `indent`, the rest indented four columns, so that they do not read as
/// lines of their own; a word too long for a line (a label) keeps its end.
fn say_within(o: &mut impl Write, indent: &str, text: &str) -> std::io::Result<()> {
    const MORE: &str = "    ";
    let width = COLUMNS - MORE.len();
    for (i, line) in wrap(text, width - indent.len()).iter().enumerate() {
        let lead = if i == 0 { indent } else { MORE };
        writeln!(o, "{lead}{}", fit_tail(line, COLUMNS - lead.len()))?;
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
    let given = super::common::given_limits(&flags)?;
    let tracing = super::common::tracing_checked(gocache::trace::TraceSource::Ci)?;
    let options = |index: &gocache::index::Index| -> gocache::Result<EndOptions> {
        Ok(EndOptions {
            keep_runs: args.keep_runs,
            limits: effective_limits(&ctx.cache_dir, index, &given)?,
            lock_wait: LOCK_WAIT,
        })
    };
    // On a full disk the index cannot be written: evict first, from an
    // in-memory copy as trim does, then end the run on the file in the
    // room that made (a second full sync: a full disk is rare).
    let first = ctx.access().run_with(ctx.now, |index, why| {
        index.set_trace(tracing);
        let opts = options(index)?;
        if why
            .is_some_and(|f| matches!(f, Fallback::InMemory { error, .. } if error.is_disk_full()))
        {
            return gocache::ci::evict_first(&ctx.cache_dir, index, &opts, ctx.now, &progress)
                .map(Pass::EvictedFirst);
        }
        gocache::ci::end(&ctx.cache_dir, index, &opts, ctx.now, &progress)
            .map(|r| Pass::Ended(Box::new(r)))
    })?;
    let (done, evicted_first) = match first.value {
        Pass::Ended(report) => (
            gocache::index::Recovered {
                value: *report,
                index: first.index,
                fallback: first.fallback,
            },
            None,
        ),
        Pass::EvictedFirst(evicted) => {
            drop(first.index);
            let done = ctx.access().run(ctx.now, |index, _| {
                index.set_trace(tracing);
                let opts = options(index)?;
                gocache::ci::end(&ctx.cache_dir, index, &opts, ctx.now, &progress)
            })?;
            (done, Some(evicted))
        }
    };
    let fallback = done.fallback.as_ref().map(|f| f.to_string());
    let mut report = done.value;
    let in_memory = done.index.is_in_memory();
    if let Some(Some(evicted)) = &evicted_first {
        absorb_first_pass(&mut report, evicted);
    }
    // One fault, one warning: what it cost is said in the same line.
    let warning = end_warning(
        &evicted_first,
        fallback.as_deref(),
        report.run.is_some(),
        in_memory,
    );
    if let Some(w) = warning {
        progress.warn(&w);
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
        ctx.print_located(fallback.as_deref(), seconds, &report)?;
    } else if !ctx.quiet {
        write!(std::io::stdout(), "{}", text(&report, seconds))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What `ci end`'s work on the index did: ended the run, or (on a full
/// disk) only evicted, for the run to be ended on the file next.
/// `ci end`'s one warning for what went wrong, if anything: the eviction
/// a full disk made it do first, an index it could not write (`fallback`),
/// or no `ci begin` to end.
fn end_warning(
    evicted_first: &Option<Option<gocache::ci::Evicted>>,
    fallback: Option<&str>,
    has_run: bool,
    in_memory: bool,
) -> Option<String> {
    match (evicted_first, fallback, has_run) {
        (Some(evicted), _, _) => {
            let removed = evicted.as_ref().map_or(0, |e| e.executed.removed);
            let then = match fallback {
                Some(why) => format!(
                    "; the index still cannot be written ({why}): this run's end is not \
                 recorded, and the next ci begin walks the cache"
                ),
                None => "; then ended the run on the index".into(),
            };
            Some(format!(
                "the disk was full, so the index could not be written: removed {removed} \
             entries first, working from a walk of the cache{then}"
            ))
        }
        (None, Some(why), true) if in_memory => Some(format!(
            "{why}; this run's end cannot be recorded, and the next ci begin walks the cache"
        )),
        (None, Some(why), false) => Some(format!(
            "{why}; no ci begin could be read from it, so nothing counts as used or made"
        )),
        (None, Some(why), true) => Some(why.to_string()),
        (None, None, false) => Some(
            "no ci begin was recorded for this job (run `gocache ci begin` right after restoring \
         the cache): nothing could be counted as used, and the next ci begin walks the cache"
                .into(),
        ),
        (None, None, true) => None,
    }
}

enum Pass {
    Ended(Box<EndReport>),
    EvictedFirst(Option<gocache::ci::Evicted>),
}

/// Adds what the eviction before the run's end removed (on a full disk)
/// to the end's report: one `ci end`, one account of what it removed.
fn absorb_first_pass(report: &mut EndReport, first: &gocache::ci::Evicted) {
    let (executed, by_rule) = (&first.executed, &first.by_rule);
    let b = &mut report.removed;
    b.entries += executed.removed;
    b.allocated_bytes = b.allocated_bytes.saturating_add(executed.removed_allocated);
    b.apparent_bytes = b.apparent_bytes.saturating_add(executed.removed_apparent);
    for (rule, bytes) in by_rule {
        match report.removed_by_rule.iter_mut().find(|(r, _)| r == rule) {
            Some((_, have)) => {
                have.entries += bytes.entries;
                have.allocated_bytes = have.allocated_bytes.saturating_add(bytes.allocated_bytes);
                have.apparent_bytes = have.apparent_bytes.saturating_add(bytes.apparent_bytes);
            }
            None => report.removed_by_rule.push((*rule, *bytes)),
        }
    }
    match &mut report.executed {
        Some(e) => e.absorb(executed.clone()),
        None => report.executed = Some(executed.clone()),
    }
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
        let row = format!(
            "  {name:<9} {:>9}  {:>11}  {note}",
            count(b.entries),
            human(b.allocated_bytes)
        );
        let _ = writeln!(o, "{}", row.trim_end());
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
    // Laid out for 80 columns, as every human report: broken at spaces.
    for (i, line) in super::common::wrap(&limits_line(r), 76).iter().enumerate() {
        let _ = writeln!(o, "{}{line}", if i == 0 { "  " } else { "    " });
    }
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
        // The last column counts across runs, and only what gocache go
        // saw: a program plain go ran is used by this run and counted 0.
        let _ = writeln!(
            o,
            "| largest programs | on disk | used by this run | started through `gocache go`, all runs |"
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
