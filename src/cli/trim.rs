//! `gocache trim`: sync, plan, evict.

use std::process::ExitCode;
use std::time::Instant;

use super::common::{
    COLUMNS, Ctx, Global, LimitArgs, Progress, count, fit_tail, heading, human, short_entry, wrap,
};
use gocache::enforce::{TrimOutcome, TrimReport, effective_limits};
use gocache::policy::Rule;
use gocache::report::Reporter;

/// Evict entries to keep the cache within its limits.
///
/// Syncs the index with the disk (rereading every entry's mtime), plans, and
/// removes, in this order: garbage (action entries whose output is gone,
/// outputs no action names), entries past their tier's age limit, the least
/// recently used executables while over --exe-quota, the least recently used
/// entries while over --budget, and more while the filesystem has less free
/// than --min-free. Nothing a go command used within the grace period (at
/// least 1h) is removed: a go command running beside a trim keeps every
/// path it was handed for that long (Go's 1h mtime lag is added to the
/// window, since plain go records a use only in an mtime over an hour old).
///
/// Limits not given here come from the environment (GOCACHE_BUDGET,
/// GOCACHE_EXE_QUOTA, …), then the config file ($GOCACHE_CONFIG, else
/// $XDG_CONFIG_HOME/gocache/config), then those stored with `gocache
/// limits`, then the defaults. With no limits set, a trim removes garbage,
/// build entries unused for 5 days (as Go does) and executables unused for
/// 2 days (Go keeps them 5); there is no budget until one is set.
///
/// One trim runs at a time: a second one says so and exits 0. A trim that
/// leaves a limit unmet (entries used within the grace period, removals
/// that failed) says which and why, and exits 3; with -q, in one line on
/// stderr.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    limits: LimitArgs,
    /// Show what would be removed, and why; change nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Print the result as JSON.
    #[arg(long, help_heading = heading::OUTPUT)]
    json: bool,
    /// List every entry removed (or, with --dry-run, to be removed).
    #[arg(long, short, help_heading = heading::OUTPUT)]
    verbose: bool,
    /// Trim a remote tier instead: s3://BUCKET/PREFIX
    ///
    /// The same as `gocache remote trim URL --budget SIZE [--grace
    /// DURATION]`; no other limit applies to a bucket.
    #[arg(long, value_name = "URL", help_heading = heading::REMOTE,
          value_hint = clap::ValueHint::Url)]
    remote: Option<String>,
    #[command(flatten)]
    endpoint: super::remote::EndpointArgs,
}

/// `trim --remote URL`: only --budget (a size) and --grace mean anything
/// for a bucket.
fn trim_remote(global: &Global, url: String, args: Args) -> anyhow::Result<ExitCode> {
    let bad = |msg: String| anyhow::Error::new(gocache::Error::Invalid(msg));
    let l = &args.limits;
    if l.exe_quota.is_some()
        || l.build_max_age.is_some()
        || l.exe_max_age.is_some()
        || l.min_free.is_some()
    {
        return Err(bad(
            "trim --remote takes --budget and --grace only: a bucket has no executables' \
             quota, ages or free space"
                .into(),
        ));
    }
    if l.policy.is_some() {
        return Err(bad(
            "trim --remote evicts by fleet-wide last use only: --policy applies to a local \
             cache; drop it"
                .into(),
        ));
    }
    let budget = match l.budget {
        Some(gocache::limits::SizeLimit::Bytes(b)) => b,
        Some(gocache::limits::SizeLimit::Percent(_)) => {
            return Err(bad(
                "a remote budget is a size such as 200GiB, not a share: a bucket has no \
                 filesystem to take a share of"
                    .into(),
            ));
        }
        Some(gocache::limits::SizeLimit::NoLimit) | None => {
            return Err(bad("trim --remote needs --budget SIZE".into()));
        }
    };
    super::remote::trim_as_remote(
        global,
        super::remote::TrimAsRemote {
            url,
            endpoint: args.endpoint,
            budget,
            grace: l.grace,
            dry_run: args.dry_run,
            json: args.json,
            verbose: args.verbose,
        },
    )
}

pub fn run(global: &Global, mut args: Args) -> anyhow::Result<ExitCode> {
    if let Some(url) = args.remote.take() {
        return trim_remote(global, url, args);
    }
    let ctx = Ctx::locate(global)?;
    let given = args.limits.given()?;
    let started = Instant::now();
    let progress = Progress::new(ctx.quiet, args.json).verbose(args.verbose);
    // Whose entries go, read before they do (-v only).
    let want_modules = args.verbose && !args.json && !ctx.quiet;
    let mut modules = Default::default();
    let done = ctx.access().run(ctx.now, |index, _| {
        let limits = effective_limits(&ctx.cache_dir, index, &given)?;
        if want_modules {
            modules = index.entry_modules().unwrap_or_default();
        }
        gocache::enforce::trim(
            &ctx.cache_dir,
            index,
            &limits,
            args.dry_run,
            ctx.now,
            &progress,
        )
    })?;
    let fallback = done.fallback.as_ref().map(|f| f.to_string());
    if let Some(why) = &fallback {
        progress.warn(why);
    }
    let mut index = done.index;
    let report = match done.value {
        TrimOutcome::Done(r) => r,
        TrimOutcome::Locked => {
            if !ctx.quiet {
                use std::io::Write;
                writeln!(
                    std::io::stdout(),
                    "another trim is running on {} (it holds {}); nothing to do",
                    ctx.cache_dir.display(),
                    gocache::cachedir::lock_path(&ctx.cache_dir).display()
                )?;
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    if !index.is_in_memory() && !args.dry_run {
        let executed = report.executed.as_ref();
        let summary = gocache::index::LastTrim {
            at: ctx.now,
            removed: executed.map_or(0, |e| e.removed),
            removed_allocated: executed.map_or(0, |e| e.removed_allocated),
            limits_met: report.limits_met,
        };
        // Best effort: the trim happened whether or not this is recorded.
        let _ = index.record_last_trim(&summary);
    }
    // Failed removals: one line, whatever their number (each one under
    // --verbose, as they happen). They are errors, so -q prints the line.
    if let Some(e) = &report.executed
        && e.failed > 0
    {
        eprintln!(
            "gocache: error: could not remove {} entries (first: {}){}",
            count(e.failed),
            e.errors.first().map_or("", String::as_str),
            if args.verbose {
                ""
            } else {
                "; --verbose lists each"
            }
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        ctx.print_located(fallback.as_deref(), seconds, &report)?;
    } else if !ctx.quiet {
        print_text(&report, args.verbose.then_some(&modules), seconds)?;
    } else if !report.dry_run {
        // What needs a look, even with -q (cron mails it): which limit is
        // unmet, one line each, as the report says it.
        for u in &report.unmet {
            eprintln!("gocache: {}", unmet_line(u));
        }
    }
    Ok(if report.dry_run || report.limits_met {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::common::LIMITS_NOT_MET)
    })
}

/// `budget not met: still 1.2 GiB over: why`.
fn unmet_line(u: &gocache::policy::Unmet) -> String {
    format!(
        "{} not met: still {} over: {}",
        u.limit.as_str(),
        human(u.over_by),
        u.reason
    )
}

/// The summary, and with -v (`verbose`: whose entry each was) a line per
/// entry: `would remove 3f/3f0c9a1b…-d output   1.2 MiB age  example.com/hello`,
/// within 80 columns.
fn print_text(
    r: &TrimReport,
    verbose: Option<&gocache::index::ModuleMap>,
    seconds: f64,
) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let p = &r.plan;
    let verb = if r.dry_run { "would remove" } else { "removed" };
    if let Some(modules) = verbose {
        // A real run lists what left the disk, not what was planned.
        let gone: Option<std::collections::HashSet<_>> =
            r.executed.as_ref().map(|e| e.gone.iter().collect());
        for v in &p.victims {
            if gone.as_ref().is_some_and(|g| !g.contains(&v.name)) {
                continue;
            }
            let head = format!(
                "{verb} {} {:<6} {:>9} {:<10}",
                short_entry(&v.name.rel_path()),
                v.kind.as_str(),
                human(v.allocated),
                v.rule.as_str()
            );
            let module = modules.get(&v.name).map(|m| m.label()).unwrap_or_default();
            let room = COLUMNS.saturating_sub(head.chars().count() + 1);
            let line = format!("{head} {}", fit_tail(&module, room));
            writeln!(o, "{}", line.trim_end())?;
        }
    }
    let (removed, bytes) = match &r.executed {
        Some(e) => (e.removed, e.removed_allocated),
        None => (
            p.victims.len() as u64,
            p.victims.iter().map(|v| v.allocated).sum(),
        ),
    };
    writeln!(
        o,
        "{verb} {} entries, {}, in {seconds:.2}s",
        count(removed),
        human(bytes),
    )?;
    // Before and after are what was on disk (for a dry run: what the plan
    // would leave), so removals that failed show as bytes still there:
    // the entries (as stats' tiers), then the whole directory (as its
    // size, du's, what the budget bounds).
    for (tier, before, after) in [
        ("build", &r.before.build, &r.after.build),
        ("exe", &r.before.exe, &r.after.exe),
        ("total", &r.before.total, &r.after.total),
    ] {
        writeln!(
            o,
            "  {tier:<11} {:>8} -> {:<8} entries  {:>11} -> {}",
            count(before.entries),
            count(after.entries),
            human(before.allocated_bytes),
            human(after.allocated_bytes)
        )?;
    }
    for rule in Rule::ALL {
        let b = p.bytes_for(rule);
        if b.entries > 0 {
            writeln!(
                o,
                "  {:<11} {:>8} entries  {:>11}",
                rule.as_str(),
                count(b.entries),
                human(b.allocated_bytes)
            )?;
        }
    }
    writeln!(
        o,
        "  directory   {} on disk after{} (du; what the budget bounds)",
        human(r.after.total.allocated_bytes.saturating_add(r.fixed_bytes)),
        if r.dry_run { " the plan" } else { "" }
    )?;
    if let Some(e) = &r.executed {
        let skipped = e.skipped_used_since + e.skipped_changed + e.skipped_odd + e.failed;
        if e.already_gone > 0 {
            writeln!(o, "  {} entries were already gone", count(e.already_gone))?;
        }
        if skipped > 0 {
            writeln!(
                o,
                "  kept {} entries: {} used since the plan, {} changed, {} odd, {} failed",
                count(skipped),
                count(e.skipped_used_since),
                count(e.skipped_changed),
                count(e.skipped_odd),
                count(e.failed)
            )?;
        }
    }
    if p.protected.entries > 0 {
        writeln!(
            o,
            "  {} entries ({}) kept because they were used within the grace period",
            count(p.protected.entries),
            human(p.protected.allocated_bytes)
        )?;
    }
    for u in &r.unmet {
        let text = unmet_line(u);
        for (i, line) in wrap(&text, COLUMNS - 4).iter().enumerate() {
            writeln!(o, "{}{line}", if i == 0 { "  " } else { "    " })?;
        }
    }
    if r.limits_met {
        writeln!(o, "all limits met")?;
    }
    Ok(())
}
