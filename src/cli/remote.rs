//! `gocache remote stats URL` and `gocache remote trim URL`: the fleet
//! operator's view of a shared remote tier (see the library's `remote`
//! module; `gocache prog --remote` serves builds from it).

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use super::common::{COLUMNS, Global, Progress, ago, count, fit_tail, human, print_json, wrap};
use gocache::remote::policy::{RemoteLimits, RemoteRule};
use gocache::remote::s3::{S3Overrides, S3Store};
use gocache::remote::{
    ObjectStore, RemoteStats, RemoteTrimOptions, RemoteTrimReport, remote_stats, remote_trim,
};
use gocache::report::Reporter;

/// Report on and trim a shared remote tier (an S3 bucket and prefix).
///
/// A fleet's machines share Go build cache entries through an
/// S3-compatible object store (AWS S3, Garage, MinIO, R2, Ceph) under
/// s3://BUCKET/PREFIX, and log which entries they used. `remote stats`
/// reports what the prefix holds and how well it serves the fleet;
/// `remote trim` keeps it within a budget by fleet-wide last use. Run one
/// trim from one place (a cron job); several at once are safe, only
/// wasteful.
///
/// The endpoint, region and credentials come from the usual AWS variables:
/// AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (else AWS itself), AWS_REGION
/// or AWS_DEFAULT_REGION (else us-east-1), AWS_ACCESS_KEY_ID,
/// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN (none: anonymous requests).
/// --endpoint and --region win over them. Every request times out (3 s to
/// connect, 30 s in all plus a second per MiB, 10 s without a byte).
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    Stats(StatsArgs),
    Trim(TrimArgs),
}

/// Where the store is: the URL and the flags that override the AWS
/// environment.
#[derive(clap::Args, Debug)]
struct StoreArgs {
    /// The remote tier: s3://BUCKET or s3://BUCKET/PREFIX.
    #[arg(value_name = "URL", value_hint = clap::ValueHint::Url)]
    url: String,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

impl StoreArgs {
    /// The store, configured; makes no request. A bad URL, endpoint,
    /// region or half a key pair is bad input (exit 2).
    fn open(&self) -> anyhow::Result<S3Store> {
        self.endpoint.open(&self.url)
    }
}

/// The flags that override the AWS environment's endpoint and region,
/// shared by `remote` and `prog --remote`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct EndpointArgs {
    /// The S3 endpoint, http(s)://HOST[:PORT] [env: AWS_ENDPOINT_URL_S3,
    /// AWS_ENDPOINT_URL]
    ///
    /// Taken from the first of this flag, $AWS_ENDPOINT_URL_S3 and
    /// $AWS_ENDPOINT_URL [default: AWS's own endpoint for the region].
    #[arg(long, value_name = "URL", help_heading = super::common::heading::REMOTE,
          value_hint = clap::ValueHint::Url)]
    pub endpoint: Option<String>,
    /// The region requests are signed for [default: us-east-1] [env: AWS_REGION,
    /// AWS_DEFAULT_REGION]
    ///
    /// Taken from the first of this flag, $AWS_REGION and
    /// $AWS_DEFAULT_REGION; else us-east-1.
    #[arg(long, value_name = "REGION", help_heading = super::common::heading::REMOTE)]
    pub region: Option<String>,
}

impl EndpointArgs {
    /// The store at `url`, configured; makes no request. A bad URL,
    /// endpoint, region or half a key pair is an error.
    pub fn open(&self, url: &str) -> anyhow::Result<S3Store> {
        let overrides = S3Overrides {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            ..S3Overrides::default()
        };
        Ok(gocache::remote::s3::open(url, &overrides, |k| {
            std::env::var_os(k)
        })?)
    }
}

/// Report what a remote tier holds and how well it serves the fleet.
///
/// Lists the prefix and reads the use logs and snapshots the fleet's
/// sessions wrote; changes nothing, so read-only credentials do. Reports
/// the bytes under the prefix (what a `remote trim --budget` counts, as
/// stored), the action entries and outputs, the bytes stored against the
/// bytes before compression, the use logs not merged yet, the objects by
/// last use anywhere in the fleet, and the hit share of the sessions that
/// reported in the last 30 days.
///
/// --json prints one object; see the README for its fields.
#[derive(clap::Args, Debug)]
struct StatsArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Print JSON instead of a table.
    #[arg(long, help_heading = super::common::heading::OUTPUT)]
    json: bool,
}

/// The grace period when --grace is not given: far above the interval at
/// which sessions log their uses (a minute, or fifteen for a set of uses
/// the same machine reported already: `remote::tier::REPORT_AGAIN_AFTER`).
const DEFAULT_GRACE: i64 = 3600;

/// Keep a remote tier within a budget, by fleet-wide last use.
///
/// Merges the use logs every session wrote into one snapshot, then deletes
/// cache objects while the prefix is over --budget, the least recently
/// used anywhere in the fleet first (an action entry with the output it
/// names), after the garbage (action entries whose output is gone, outputs
/// nothing names, objects that are not Go's format). Nothing uploaded or
/// used within the grace period is deleted, so running builds are safe;
/// a build that wants an object a trim deleted rebuilds it. Keys under the
/// prefix that gocache did not write are never touched, but count toward
/// the budget.
///
/// Needs credentials that may list, read, write and delete under the
/// prefix; --dry-run only reads. Exits 3 when the budget is not met after
/// the trim (objects inside the grace period, deletions the store
/// refused): the output says by how much and why.
#[derive(clap::Args, Debug)]
struct TrimArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The most the prefix may hold, everything under it counted: 200GiB, 500GB
    ///
    /// 200GiB, 200G (binary), 500GB (decimal). 0B deletes every object
    /// outside the grace period.
    #[arg(long, value_name = "SIZE", value_parser = parse_remote_budget, allow_hyphen_values = true,
          help_heading = super::common::heading::LIMITS, value_hint = clap::ValueHint::Other)]
    budget: u64,
    /// Never delete an object uploaded or used this recently [default: 1h]
    ///
    /// 90m, 2h, 1d. Uses reach the store within a minute, or fifteen when
    /// a machine repeats what it reported already: keep it above 20m.
    #[arg(long, value_name = "DURATION", value_parser = parse_grace, allow_hyphen_values = true,
          help_heading = super::common::heading::LIMITS, value_hint = clap::ValueHint::Other)]
    grace: Option<i64>,
    /// Show what would be deleted, and why; change nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Print the result as JSON.
    #[arg(long, help_heading = super::common::heading::OUTPUT)]
    json: bool,
    /// List every object deleted (or, with --dry-run, to be deleted).
    #[arg(long, short, help_heading = super::common::heading::OUTPUT)]
    verbose: bool,
}

fn parse_remote_budget(s: &str) -> gocache::Result<u64> {
    match gocache::limits::parse_cap(s, "every object under the prefix")? {
        gocache::limits::SizeSpec::Bytes(b) => Ok(b),
        gocache::limits::SizeSpec::Percent(_) => Err(gocache::Error::Invalid(format!(
            "a remote budget is a size such as 200GiB, not a share ({s:?}): a bucket has no \
             filesystem to take a share of"
        ))),
    }
}

fn parse_grace(s: &str) -> gocache::Result<i64> {
    gocache::limits::parse_duration(s)
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Stats(a) => stats(global, a),
        Command::Trim(a) => trim(global, a),
    }
}

/// `gocache stats --remote URL`: `gocache remote stats URL`.
pub fn stats_as_remote(
    global: &Global,
    url: String,
    endpoint: EndpointArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    stats(
        global,
        StatsArgs {
            store: StoreArgs { url, endpoint },
            json,
        },
    )
}

/// What `gocache trim --remote URL` passes on to `gocache remote trim URL`.
pub struct TrimAsRemote {
    pub url: String,
    pub endpoint: EndpointArgs,
    pub budget: u64,
    pub grace: Option<i64>,
    pub dry_run: bool,
    pub json: bool,
    pub verbose: bool,
}

/// `gocache trim --remote URL --budget SIZE`: `gocache remote trim`.
pub fn trim_as_remote(global: &Global, t: TrimAsRemote) -> anyhow::Result<ExitCode> {
    trim(
        global,
        TrimArgs {
            store: StoreArgs {
                url: t.url,
                endpoint: t.endpoint,
            },
            budget: t.budget,
            grace: t.grace,
            dry_run: t.dry_run,
            json: t.json,
            verbose: t.verbose,
        },
    )
}

#[derive(serde::Serialize)]
struct StatsOut<'a> {
    url: String,
    store: String,
    seconds: f64,
    #[serde(flatten)]
    stats: &'a RemoteStats,
}

fn stats(global: &Global, args: StatsArgs) -> anyhow::Result<ExitCode> {
    let store = args.store.open()?;
    let url = gocache::remote::RemoteUrl::parse(&args.store.url)?;
    let started = Instant::now();
    let progress = Progress::new(global.quiet, args.json);
    let now = super::common::now();
    progress.start("list", 0);
    let stats = remote_stats(&store, now);
    progress.finish();
    // The store's error already holds its cause: one line, no chain.
    let stats = stats.map_err(|e| anyhow::anyhow!("could not report on {url}: {e}"))?;
    for u in &stats.unread {
        progress.warn(&format!("{}: not read: {}", u.key, u.why));
    }
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        print_json(&StatsOut {
            url: url.to_string(),
            store: store.describe(),
            seconds,
            stats: &stats,
        })?;
    } else {
        print_stats(&mut std::io::stdout().lock(), &store.describe(), &stats)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

/// The label column of the summary.
const HEAD: usize = 13;

fn print_stats(o: &mut dyn Write, store: &str, s: &RemoteStats) -> std::io::Result<()> {
    let line = |o: &mut dyn Write, label: &str, text: String| {
        for (i, l) in wrap(&text, COLUMNS - HEAD).iter().enumerate() {
            writeln!(o, "{:<HEAD$}{l}", if i == 0 { label } else { "" })?;
        }
        Ok::<(), std::io::Error>(())
    };
    writeln!(o, "Remote cache {}", fit_tail(store, COLUMNS - 13))?;
    writeln!(o)?;
    line(
        o,
        "Size",
        format!(
            "{} under the prefix (what `remote trim --budget` counts)",
            human(s.prefix_bytes)
        ),
    )?;
    line(
        o,
        "Objects",
        format!(
            "{}, {}: {} action entries ({}), {} outputs ({})",
            count(s.total.objects),
            human(s.total.bytes),
            count(s.actions.objects),
            human(s.actions.bytes),
            count(s.outputs.objects),
            human(s.outputs.bytes)
        ),
    )?;
    line(o, "Compression", compression_line(s))?;
    line(
        o,
        "Uploads",
        match (s.oldest_upload, s.newest_upload) {
            (Some(a), Some(b)) => format!("oldest {}, newest {}", ago(s.now, a), ago(s.now, b)),
            _ => "none".to_string(),
        },
    )?;
    let c = &s.counts;
    line(
        o,
        "Fleet",
        match s.hit_share {
            Some(h) => format!(
                "{} {} in 30 days: {} of {} lookups hit ({:.0}%)",
                count(s.sessions),
                plural(s.sessions, "session"),
                count(c.hits),
                count(c.lookups),
                h * 100.0
            ),
            None => format!(
                "{} {} in 30 days, no lookups recorded",
                count(s.sessions),
                plural(s.sessions, "session")
            ),
        },
    )?;
    if s.sessions > 0 {
        line(
            o,
            "Transfers",
            format!(
                "{} uploads ({}), {} downloaded; {} refused, {} errors",
                count(c.uploads),
                human(c.upload_bytes),
                human(c.download_bytes),
                count(c.refused),
                count(c.errors)
            ),
        )?;
    }
    line(
        o,
        "Use logs",
        format!(
            "{} not merged yet ({}), {} snapshots ({}); a trim merges them",
            count(s.logs.objects),
            human(s.logs.bytes),
            count(s.snapshots.objects),
            human(s.snapshots.bytes)
        ),
    )?;
    if s.manifests.objects > 0 {
        line(
            o,
            "Manifests",
            format!(
                "{} ({}): what the last session of each build key used, for prefetching",
                count(s.manifests.objects),
                human(s.manifests.bytes)
            ),
        )?;
    }
    if s.other.objects > 0 {
        line(
            o,
            "Other keys",
            format!(
                "{} ({}), never touched",
                count(s.other.objects),
                human(s.other.bytes)
            ),
        )?;
    }
    if !s.unread.is_empty() {
        line(
            o,
            "Not read",
            format!(
                "{} use logs or snapshots (damaged, too big, or from a newer gocache)",
                s.unread.len()
            ),
        )?;
    }
    writeln!(o)?;
    print_ages(o, s)
}

/// `remote stats`' compression line: stored against logical bytes.
fn compression_line(s: &RemoteStats) -> String {
    match s.compression_ratio {
        Some(r) if s.compressed.objects > 0 => format!(
            "{} stored for {} of entries ({r:.2}x): {} of {} outputs compressed",
            human(s.stored_bytes),
            human(s.logical_bytes),
            count(s.compressed.objects),
            count(s.outputs.objects)
        ),
        _ => "none: every output is stored as it is".to_string(),
    }
}

/// `remote stats`' table of objects by their last use in the fleet.
fn print_ages(o: &mut dyn Write, s: &RemoteStats) -> std::io::Result<()> {
    writeln!(o, "By last use in the fleet:")?;
    writeln!(o, "  {:<11} {:>12} {:>12}", "", "objects", "bytes")?;
    for a in &s.age {
        writeln!(
            o,
            "  {:<11} {:>12} {:>12}",
            a.bucket,
            count(a.totals.objects),
            human(a.totals.bytes)
        )?;
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct TrimOut<'a> {
    url: String,
    store: String,
    limits: RemoteLimits,
    seconds: f64,
    budget_met: bool,
    #[serde(flatten)]
    report: &'a RemoteTrimReport,
}

fn trim(global: &Global, args: TrimArgs) -> anyhow::Result<ExitCode> {
    let store = args.store.open()?;
    let url = gocache::remote::RemoteUrl::parse(&args.store.url)?;
    let started = Instant::now();
    let progress = Progress::new(global.quiet, args.json).verbose(args.verbose);
    let now = super::common::now();
    let limits = RemoteLimits {
        budget: Some(args.budget),
        grace: args.grace.unwrap_or(DEFAULT_GRACE),
    };
    let options = RemoteTrimOptions {
        limits,
        dry_run: args.dry_run,
    };
    progress.start("read use logs", 0);
    let report = remote_trim(&store, &options, now, &progress);
    progress.finish();
    let report = report.map_err(|e| {
        let what = if e.is_denied() {
            format!(
                "could not trim {url}: a trim needs credentials that may list, read, write \
                 and delete under the prefix (--dry-run only reads)"
            )
        } else {
            format!("could not trim {url}")
        };
        // The store's error already holds its cause: one line, no chain.
        anyhow::anyhow!("{what}: {e}")
    })?;
    // Deletions refused: errors, so -q prints the line.
    if let Some((key, why)) = report.delete_failures.first() {
        eprintln!(
            "gocache: error: the store refused to delete {} objects (first: {key}: {why})",
            report.delete_failures.len()
        );
    }
    let met = report.plan.unmet.is_none() && report.delete_failures.is_empty();
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        print_json(&TrimOut {
            url: url.to_string(),
            store: store.describe(),
            limits,
            seconds,
            budget_met: met,
            report: &report,
        })?;
    } else if !global.quiet {
        print_trim(
            &mut std::io::stdout().lock(),
            &report,
            args.budget,
            met,
            args.verbose,
            now,
            seconds,
        )?;
    } else if !report.dry_run
        && let Some(u) = &report.plan.unmet
    {
        // What needs a look, even with -q (cron mails it), as `gocache
        // trim -q` says it: one line.
        eprintln!("gocache: {}", remote_unmet_text(u));
    }
    Ok(if report.dry_run || met {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::common::LIMITS_NOT_MET)
    })
}

/// Why the bucket is still over its budget, in one sentence.
fn remote_unmet_text(u: &gocache::remote::policy::RemoteUnmet) -> String {
    format!(
        "budget not met: still {} over: {} inside the grace period, {} of use logs, \
         snapshots, manifests and other keys",
        human(u.over_by),
        human(u.protected_bytes),
        human(u.fixed_bytes)
    )
}

fn rule_name(r: RemoteRule) -> &'static str {
    match r {
        RemoteRule::Garbage => "garbage",
        RemoteRule::Budget => "budget",
    }
}

/// With -v, a line per object the trim deletes (or would), less those the
/// store refused.
fn print_victims(
    o: &mut dyn Write,
    r: &RemoteTrimReport,
    verb: &str,
    now: gocache::UnixTime,
) -> std::io::Result<()> {
    let p = &r.plan;
    let failed: std::collections::HashSet<&str> =
        r.delete_failures.iter().map(|(k, _)| k.as_str()).collect();
    for v in &p.victims {
        let key = v.key.key();
        if !r.dry_run && failed.contains(key.as_str()) {
            continue;
        }
        // `o/3f0c9a1b…e2`; a compressed output's length left out.
        let short = match key.split_at_checked(2) {
            Some((kind, id)) if id.len() >= 64 && id.is_char_boundary(64) => {
                format!("{kind}{}…{}", &id[..8], &id[62..64])
            }
            _ => key.clone(),
        };
        writeln!(
            o,
            "{verb} {short:<14} {:>10} {:<8} last used {}",
            human(v.size),
            rule_name(v.rule),
            ago(now, v.last_use)
        )?;
    }
    Ok(())
}

/// The trim's other counts: logs merged, action entries read, objects
/// spared, kept and refused; each only when there is one.
fn print_trim_counts(o: &mut dyn Write, r: &RemoteTrimReport) -> std::io::Result<()> {
    let p = &r.plan;
    let merged = if r.dry_run { "would merge" } else { "merged" };
    if r.logs_merged + r.snapshots_merged > 0 {
        writeln!(
            o,
            "  {merged} {} use logs and {} snapshots{}",
            count(r.logs_merged),
            count(r.snapshots_merged),
            r.snapshot
                .as_deref()
                .map_or(String::new(), |s| format!(" into {s}"))
        )?;
    }
    if r.actions_read > 0 {
        writeln!(
            o,
            "  read {} action entries no use log named",
            count(r.actions_read)
        )?;
    }
    if r.spared > 0 {
        writeln!(
            o,
            "  spared {} objects used while the trim ran",
            count(r.spared)
        )?;
    }
    if p.protected.objects > 0 {
        writeln!(
            o,
            "  kept {} objects ({}) uploaded or used within the grace period",
            count(p.protected.objects),
            human(p.protected.bytes)
        )?;
    }
    if !r.delete_failures.is_empty() {
        writeln!(
            o,
            "  the store refused to delete {} objects",
            count(r.delete_failures.len() as u64)
        )?;
    }
    Ok(())
}

/// The summary, and with -v a line per object:
/// `would remove o/3f0c9a1b…e2    1.2 MiB budget   used 3d ago`.
fn print_trim(
    o: &mut dyn Write,
    r: &RemoteTrimReport,
    budget: u64,
    met: bool,
    verbose: bool,
    now: gocache::UnixTime,
    seconds: f64,
) -> std::io::Result<()> {
    let p = &r.plan;
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    if verbose {
        print_victims(o, r, verb, now)?;
    }
    let (n, bytes) = if r.dry_run {
        (p.victims.len() as u64, p.freed())
    } else {
        (r.deleted, r.deleted_bytes)
    };
    let before = p.before.bytes.saturating_add(p.fixed_bytes);
    let after = before.saturating_sub(bytes);
    writeln!(
        o,
        "{verb} {} objects, {} in {seconds:.2}s",
        count(n),
        human(bytes)
    )?;
    writeln!(
        o,
        "  prefix {} -> {} for a budget of {}",
        human(before),
        human(after),
        human(budget)
    )?;
    for rule in [RemoteRule::Garbage, RemoteRule::Budget] {
        let (k, b) = p
            .victims
            .iter()
            .filter(|v| v.rule == rule)
            .fold((0u64, 0u64), |(k, b), v| (k + 1, b + v.size));
        if k > 0 {
            writeln!(
                o,
                "  {:<9} {:>10} objects {:>11}",
                rule_name(rule),
                count(k),
                human(b)
            )?;
        }
    }
    print_trim_counts(o, r)?;
    if let Some(u) = &p.unmet {
        let text = remote_unmet_text(u);
        for (i, line) in wrap(&text, COLUMNS - 4).iter().enumerate() {
            writeln!(o, "{}{line}", if i == 0 { "  " } else { "    " })?;
        }
    }
    if met {
        writeln!(o, "budget met")?;
    }
    Ok(())
}
